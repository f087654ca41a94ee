"""The RocksDB sequence store on real files: atomic batches, bounds, recovery."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from elcrec.state import (
    Outcome,
    PartitionLockedError,
    SequenceReader,
    SequenceStore,
    StateCorruptError,
    StoreOptions,
)
from elcrec.stream import ClickEvent

T0 = 1_733_300_000_000
TOPIC = "elcrec.events"


def ev(n: int, user: str = "u1", item: str | None = None, ts: int | None = None, **kw):
    return ClickEvent(
        event_id=kw.pop("event_id", f"e{n}"),
        user_id=user,
        item_id=item or f"i{n}",
        event_type=kw.pop("event_type", "click"),
        ts=T0 + n if ts is None else ts,
    )


def test_sequence_keeps_the_newest_items_by_event_time(tmp_path):
    with SequenceStore(tmp_path, TOPIC, StoreOptions(max_sequence_length=3)) as store:
        part = store.assign(0)
        with part.begin() as tx:
            for n in range(5):
                assert tx.apply(ev(n), offset=n) is Outcome.APPLIED
            # A late event lands in event-time order; one older than the whole
            # (full) window is stale.
            assert tx.apply(ev(9, ts=T0 + 3), offset=5) is Outcome.APPLIED
            assert tx.apply(ev(10, ts=T0 - 5), offset=6) is Outcome.STALE
        seq = store.get("u1")
        assert seq.items == ("i3", "i9", "i4")
        assert seq.ts == (T0 + 3, T0 + 3, T0 + 4)
        assert seq.version == 6 and seq.last_offset == 5
        assert part.next_offset == 7
        assert part.user_count == 1


def test_uncounted_event_types_advance_the_offset_only(tmp_path):
    opts = StoreOptions(counted_event_types=frozenset({"purchase"}))
    with SequenceStore(tmp_path, TOPIC, opts) as store:
        part = store.assign(0)
        with part.begin() as tx:
            assert tx.apply(ev(0, event_type="view"), offset=0) is Outcome.IGNORED
            assert tx.apply(ev(1, event_type="purchase"), offset=1) is Outcome.APPLIED
        assert store.get("u1").items == ("i1",)
        assert part.next_offset == 2


def test_aborted_transaction_leaves_sequences_and_offset_untouched(tmp_path):
    with SequenceStore(tmp_path, TOPIC) as store:
        part = store.assign(0)
        with part.begin() as tx:
            tx.apply(ev(0), offset=0)
        with pytest.raises(RuntimeError):
            with part.begin() as tx:
                tx.apply(ev(1), offset=1)
                assert tx.get("u1").items == ("i0", "i1")  # reads its own writes
                raise RuntimeError("crash inside the batch")
        assert store.get("u1").items == ("i0",)
        assert part.next_offset == 1
        # The aborted event is not remembered as seen either.
        with part.begin() as tx:
            assert tx.apply(ev(1), offset=1) is Outcome.APPLIED


def test_records_below_the_stored_offset_are_not_applied_again(tmp_path):
    with SequenceStore(tmp_path, TOPIC, StoreOptions(dedup_window=0)) as store:
        part = store.assign(0)
        with part.begin() as tx:
            for n in range(3):
                tx.apply(ev(n), offset=n)
        with part.begin() as tx:
            assert tx.apply(ev(1), offset=1) is Outcome.REPLAYED
            assert not tx.advance(2)
            assert tx.apply(ev(3), offset=3) is Outcome.APPLIED
        assert store.get("u1").version == 4


def test_dedup_window_is_bounded_and_survives_reopen(tmp_path):
    opts = StoreOptions(dedup_window=3)
    with SequenceStore(tmp_path, TOPIC, opts) as store:
        part = store.assign(0)
        for n in range(5):
            with part.begin() as tx:
                tx.apply(ev(n), offset=n)
        with part.begin() as tx:
            assert tx.apply(ev(4), offset=5) is Outcome.DUPLICATE
        assert part.dedup_size == 3
    with SequenceStore(tmp_path, TOPIC, opts) as store:
        part = store.assign(0)
        assert part.dedup_size == 3
        with part.begin() as tx:
            assert tx.apply(ev(2), offset=6) is Outcome.DUPLICATE  # in window
            assert tx.apply(ev(0), offset=7) is Outcome.APPLIED  # fell out
        assert store.get("u1").version == 6


def test_dedup_forgets_whole_batches_only(tmp_path):
    with SequenceStore(tmp_path, TOPIC, StoreOptions(dedup_window=3)) as store:
        part = store.assign(0)
        with part.begin() as tx:  # one batch of 5 ids stays whole
            for n in range(5):
                tx.apply(ev(n), offset=n)
        assert part.dedup_size == 5
        with part.begin() as tx:
            assert tx.apply(ev(0), offset=5) is Outcome.DUPLICATE
            tx.apply(ev(10), offset=6)
            tx.apply(ev(11), offset=7)
            tx.apply(ev(12), offset=8)
        assert part.dedup_size == 3  # the first batch is forgotten


def test_outbox_marks_users_until_their_newest_version_is_published(tmp_path):
    with SequenceStore(tmp_path, TOPIC) as store:
        part = store.assign(0)
        with part.begin() as tx:
            tx.apply(ev(0, user="a"), offset=0)
            tx.apply(ev(1, user="b"), offset=1)
        assert sorted(part.unpublished()) == ["a", "b"]
        with part.begin() as tx:
            tx.apply(ev(2, user="b"), offset=2)  # b is now at version 2
        part.mark_published([("a", 1), ("b", 1)])
        assert part.unpublished() == ["b"]  # version 2 is not confirmed
        with part.begin() as tx:
            tx.apply(ev(3, user="c"), offset=3)
    with SequenceStore(tmp_path, TOPIC) as store:  # marks are persistent
        part = store.assign(0)
        assert sorted(part.unpublished()) == ["b", "c"]
        part.mark_published([("b", 2)])
        assert part.unpublished() == ["c"]


def test_second_owner_of_a_partition_times_out_on_the_lock(tmp_path):
    with SequenceStore(tmp_path, TOPIC) as store:
        store.assign(0)
        other = SequenceStore(tmp_path, TOPIC, StoreOptions(lock_timeout_s=0.3))
        with pytest.raises(PartitionLockedError, match="lock_timeout_s"):
            other.assign(0)


WRITER = textwrap.dedent(
    """
    import sys
    from elcrec.state import SequenceStore, StoreOptions
    from elcrec.stream import ClickEvent
    store = SequenceStore(sys.argv[1], "elcrec.events", StoreOptions(sync_writes=False))
    part = store.assign(0)
    n = 0
    while True:
        with part.begin() as tx:
            for _ in range(50):
                tx.apply(ClickEvent(event_id=f"e{n}", user_id=f"u{n % 7}",
                                    item_id=f"i{n}", event_type="click",
                                    ts=1733300000000 + n), offset=n)
                n += 1
        if n == 500:
            print("ready", flush=True)
    """
)


def test_store_left_by_a_killed_process_opens_with_whole_batches(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER, str(tmp_path)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "ready"
        time.sleep(0.3)
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()

    with SequenceStore(tmp_path, TOPIC) as store:
        part = store.assign(0)
        n = part.next_offset
        assert n >= 500 and n % 50 == 0  # only whole batches
        versions = {s.user_id: s.version for s in part.sequences()}
        assert versions == {f"u{k}": len(range(k, n, 7)) for k in range(7)}
        assert part.user_count == 7


def test_reader_in_another_process_sees_each_commit(tmp_path):
    reader_code = textwrap.dedent(
        """
        import sys, time
        from elcrec.state import SequenceReader
        reader = SequenceReader(sys.argv[1], "elcrec.events")
        print("ready", flush=True)
        for line in sys.stdin:
            seq = reader.get(line.strip())
            print(seq.version if seq else 0, flush=True)
        """
    )
    with SequenceStore(tmp_path, TOPIC) as store:
        part = store.assign(0)
        with part.begin() as tx:
            tx.apply(ev(0), offset=0)
        proc = subprocess.Popen(
            [sys.executable, "-c", reader_code, str(tmp_path)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert proc.stdout.readline().strip() == "ready"
            for n in range(1, 4):
                with part.begin() as tx:
                    tx.apply(ev(n), offset=n)
                proc.stdin.write("u1\n")
                proc.stdin.flush()
                assert proc.stdout.readline().strip() == str(n + 1)
        finally:
            proc.stdin.close()
            proc.wait(10)


def test_reader_picks_up_partitions_created_later(tmp_path):
    with SequenceStore(tmp_path, TOPIC) as store:
        with SequenceReader(tmp_path, TOPIC) as reader:
            assert reader.partitions == []
            with store.assign(2).begin() as tx:
                tx.apply(ev(0, user="z"), offset=0)
            assert reader.get("z").items == ("i0",)
            assert reader.next_offsets() == {2: 1}


def test_checkpoint_is_an_openable_consistent_copy(tmp_path):
    with SequenceStore(tmp_path / "live", TOPIC) as store:
        for p in (0, 1):
            with store.assign(p).begin() as tx:
                tx.apply(ev(p, user=f"u{p}"), offset=0)
        store.checkpoint(tmp_path / "copy")
        with store.partition(0).begin() as tx:
            tx.apply(ev(5, user="u0"), offset=1)
    with SequenceStore(tmp_path / "copy", TOPIC) as copy:
        assert copy.assign(0).get("u0").items == ("i0",)
        assert copy.assign(1).get("u1").items == ("i1",)
        assert copy.partition(0).next_offset == 1


def test_damaged_files_raise_an_error_naming_the_folder(tmp_path):
    with SequenceStore(tmp_path, TOPIC) as store:
        with store.assign(0).begin() as tx:
            tx.apply(ev(0), offset=0)
    folder = tmp_path / TOPIC / "0"
    (folder / "CURRENT").write_text("MANIFEST-999999\n")
    with pytest.raises(StateCorruptError, match=str(folder)):
        SequenceStore(tmp_path, TOPIC).assign(0)


def test_options_are_validated_with_the_field_name():
    with pytest.raises(ValueError, match="max_sequence_length"):
        StoreOptions(max_sequence_length=0)
    with pytest.raises(ValueError, match="counted_event_types"):
        StoreOptions(counted_event_types=frozenset({"hover"}))
