"""The replay producer and topic creation, on the real broker."""

from __future__ import annotations

import json
import time
import uuid

import pytest
from ingest_helpers import read_topic

from elcrec.data import Interaction, read_interactions
from elcrec.stream import ClickEvent
from elcrec.stream.replay import (
    DEFAULT_BASE_TIME_MS,
    ReplayOptions,
    iter_events,
    replay,
)
from elcrec.stream.topics import TopicSpec, ensure_topics


def test_sequence_positions_become_times_from_the_base(shared_data):
    interactions = read_interactions(shared_data / "Beauty.txt")[:500]
    events = list(iter_events(interactions, ReplayOptions(id_prefix="b")))
    assert events[0]["ts"] == DEFAULT_BASE_TIME_MS
    assert [e["event_id"] for e in events[:2]] == ["b-0", "b-1"]
    for e in events:
        ClickEvent.model_validate(e)  # every replayed event is valid


def test_epoch_seconds_become_milliseconds():
    xs = [Interaction("u", "i", 881250949.0), Interaction("u", "j", 881250950.5)]
    assert [e["ts"] for e in iter_events(xs, ReplayOptions())] == [
        881250949000,
        881250950500,
    ]


def test_options_are_checked():
    with pytest.raises(ValueError, match="rate"):
        ReplayOptions(rate=0)
    with pytest.raises(ValueError, match="speedup"):
        ReplayOptions(speedup=-1)


@pytest.mark.kafka
def test_replay_sends_keyed_events_in_time_order_at_the_rate(
    bootstrap, make_topic, shared_data
):
    topic = make_topic(partitions=1)
    interactions = read_interactions(shared_data / "ml-100k.inter")
    t0 = time.monotonic()
    stats = replay(bootstrap, topic, interactions, ReplayOptions(rate=1000, limit=600))
    assert stats.sent == 600
    assert time.monotonic() - t0 >= 0.55  # 600 events at 1000/s

    records = read_topic(bootstrap, topic, 600)
    assert len(records) == 600
    values = [json.loads(r.value) for r in records]
    assert all(
        r.key.decode() == v["user_id"] for r, v in zip(records, values, strict=True)
    )
    assert [v["ts"] for v in values] == sorted(v["ts"] for v in values)
    assert [(v["user_id"], v["item_id"]) for v in values] == [
        (x.user, x.item) for x in interactions[:600]
    ]


@pytest.mark.kafka
def test_speedup_keeps_the_time_gaps_scaled(bootstrap, make_topic):
    topic = make_topic(partitions=1)
    xs = [Interaction("u", f"i{n}", 1_700_000_000.0 + 10 * n) for n in range(4)]
    t0 = time.monotonic()
    replay(bootstrap, topic, xs, ReplayOptions(speedup=50))  # 30 s of data / 50
    assert time.monotonic() - t0 >= 0.55


@pytest.mark.kafka
def test_ensure_topics_creates_once_and_reports_partition_mismatch(bootstrap):
    name = f"topics-{uuid.uuid4().hex[:8]}"
    specs = [TopicSpec(name, 2, configs={"retention.ms": "3600000"})]
    assert ensure_topics(bootstrap, specs) == {name: "created"}
    assert ensure_topics(bootstrap, specs) == {name: "exists"}
    assert ensure_topics(bootstrap, [TopicSpec(name, 4)]) == {
        name: "exists-partitions-2"
    }
