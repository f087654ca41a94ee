"""Data loaders: formats, ordering, re-indexing and clear errors."""

from __future__ import annotations

import json

import pytest

from elcrec.data import (
    Interaction,
    detect_format,
    load_sequences,
    parse_time,
    read_interactions,
)
from elcrec.exceptions import DataError
from elcrec.synthetic import SyntheticClickstream


def write(tmp_path, name, text):
    path = tmp_path / name
    path.write_text(text)
    return path


def test_sequence_format_keeps_line_order_and_numeric_item_ids(tmp_path):
    path = write(tmp_path, "d.txt", "1 5 3 9\n2 3 10\n\n")
    data = load_sequences(path)
    assert data.users == ["1", "2"]
    assert data.items == ["3", "5", "9", "10"]  # numeric order, not text order
    assert data.sequences == [[2, 1, 3], [1, 4]]
    assert data.n_items == 4


def test_ties_in_time_keep_file_order_never_item_order(tmp_path):
    path = write(
        tmp_path,
        "log.tsv",
        "user_id\titem_id\ttime\nu1\tz\t5\nu1\ta\t5\nu1\tm\t1\nu2\tb\t5\n",
    )
    events = read_interactions(path)
    assert [(e.user, e.item) for e in events] == [
        ("u1", "m"),
        ("u1", "z"),
        ("u1", "a"),
        ("u2", "b"),
    ]
    data = load_sequences(path)
    assert [[data.items[i - 1] for i in s] for s in data.sequences] == [
        ["m", "z", "a"],
        ["b"],
    ]


def test_recbole_inter_header_types_are_stripped(tmp_path):
    path = write(
        tmp_path,
        "x.inter",
        "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
        "7\t100\t3\t20\n7\t200\t4\t10\n",
    )
    assert detect_format(path) == "inter"
    assert read_interactions(path) == [
        Interaction("7", "200", 10.0),
        Interaction("7", "100", 20.0),
    ]


def test_jsonl_and_csv_with_named_columns_and_iso_times(tmp_path):
    rows = [
        {"who": "a", "what": "x", "when": "2026-01-01T00:00:02Z"},
        {"who": "a", "what": "y", "when": "2026-01-01T00:00:01+00:00"},
    ]
    path = write(tmp_path, "e.jsonl", "\n".join(json.dumps(r) for r in rows) + "\n")
    events = read_interactions(path, user_col="who", item_col="what", time_col="when")
    assert [e.item for e in events] == ["y", "x"]
    assert events[0].ts == pytest.approx(1767225601.0)

    csv_path = write(
        tmp_path, "e.csv", "user,item,ts\na,x,1700000000000\na,y,1600000000\n"
    )
    events = read_interactions(csv_path)
    assert [(e.item, e.ts) for e in events] == [("y", 1.6e9), ("x", 1.7e9)]


def test_epoch_milliseconds_become_seconds():
    assert parse_time(1_767_225_600_000, "here") == 1_767_225_600.0
    assert parse_time("1767225600", "here") == 1_767_225_600.0


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.txt", "1 2 3\n2\n", "a.txt:2: user '2' has no items"),
        ("b.txt", "1 2 x3\n", "b.txt:1: item id 'x3' is not a non-negative integer"),
        ("c.txt", "", "the file is empty"),
        (
            "d.jsonl",
            '{"user_id": "a", "item_id": "b"}\n{oops\n',
            "d.jsonl:2: invalid JSON",
        ),
        ("e.csv", "user_id,item_id\na,b\nc\n", "e.csv:3: 1 fields, the header has 2"),
        ("f.csv", "who,what\na,b\n", "cannot find the user and item columns"),
        (
            "g.tsv",
            "user_id\titem_id\ttime\na\tb\tyesterday\n",
            "g.tsv:2: time 'yesterday'",
        ),
        ("h.csv", "user_id,item_id\n,b\n", "h.csv:2: empty user_id"),
    ],
)
def test_bad_files_fail_with_file_and_line(tmp_path, name, text, message):
    path = write(tmp_path, name, text)
    with pytest.raises(
        DataError, match=message.replace("(", r"\(").replace(")", r"\)")
    ):
        load_sequences(path)


def test_missing_file_and_unknown_format_are_clear(tmp_path):
    with pytest.raises(DataError, match="no such file"):
        load_sequences(tmp_path / "nope.txt")
    path = write(tmp_path, "d.txt", "1 2\n")
    with pytest.raises(DataError, match="unknown format 'parquet'"):
        load_sequences(path, fmt="parquet")


def test_real_data_sets_load_with_their_published_sizes(shared_data):
    beauty = load_sequences(shared_data / "Beauty.txt")
    assert (beauty.n_users, beauty.n_items, beauty.n_interactions) == (
        22363,
        12101,
        198502,
    )
    ml = load_sequences(shared_data / "ml-100k.inter")
    assert (ml.n_users, ml.n_items, ml.n_interactions) == (943, 1682, 100000)
    events = read_interactions(shared_data / "grocery_train.tsv")
    assert len(events) == 121892
    assert all(a.ts <= b.ts for a, b in zip(events, events[1:], strict=False))


def test_synthetic_stream_is_seeded_and_plants_its_shift():
    a = SyntheticClickstream(
        n_users=100, n_items=80, n_intents=4, seed=3, shift_at=1500
    )
    b = SyntheticClickstream(
        n_users=100, n_items=80, n_intents=4, seed=3, shift_at=1500
    )
    assert a.interactions() == b.interactions()
    intents = a.event_intents()
    before, after = intents[:1500], intents[1500:]
    # Most clicks follow the planted intent of their moment.
    follow = sum(
        a.item_intent[e.item] == k
        for e, k in zip(a.interactions(), intents, strict=True)
    )
    assert follow / len(intents) > 0.85
    # The intent mix moves at the shift: the most popular intent loses share.
    assert before.count(0) / len(before) > after.count(0) / len(after) + 0.2


def test_an_unclosed_quote_is_reported_where_it_starts(tmp_path):
    path = tmp_path / "clicks.csv"
    rows = ["user,item,time", "u1,i1,1", 'u1,"i2,2', "u2,i3,3", "u2,i4,4"]
    path.write_text("\n".join(rows) + "\n")
    with pytest.raises(DataError, match=r"clicks.csv:3-5: .*unclosed quote"):
        read_interactions(path)
