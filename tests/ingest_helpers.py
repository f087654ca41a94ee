"""Helpers and factory fixtures of the ingestion tests (real broker, real RocksDB)."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from pathlib import Path

import pytest
from conftest import wait_until  # noqa: F401 (re-exported for the ingest tests)
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from elcrec.consumers.ingest import IngestApp
from elcrec.consumers.settings import load_ingest_settings
from elcrec.state import SequenceReader

ROOT = Path(__file__).resolve().parent.parent


def event(i: int, user: str, item: str, ts: int, event_type: str = "click") -> dict:
    return {
        "event_id": f"e{i}",
        "user_id": user,
        "item_id": item,
        "event_type": event_type,
        "ts": ts,
    }


def events_from_interactions(interactions, id_prefix: str = "ev") -> list[dict]:
    """Wire events for loader interactions (``ts`` seconds → ms)."""
    return [
        {
            "event_id": f"{id_prefix}-{n}",
            "user_id": x.user,
            "item_id": x.item,
            "event_type": "click",
            "ts": int(round(x.ts * 1000)),
        }
        for n, x in enumerate(interactions)
    ]


def produce(bootstrap: str, topic: str, records, flush: bool = True) -> None:
    """Send ``records``: dicts (keyed by user_id) or ``(key, value)`` byte pairs."""
    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=5, batch_size=256 * 1024
    )
    for rec in records:
        if isinstance(rec, dict):
            producer.send(
                topic, key=rec["user_id"].encode(), value=json.dumps(rec).encode()
            )
        else:
            key, value, *headers = rec
            producer.send(
                topic, key=key, value=value, headers=headers[0] if headers else None
            )
    if flush:
        producer.flush()
    producer.close()


def expected_sequences(events, max_len: int) -> dict[str, tuple[tuple, tuple]]:
    """The last ``max_len`` (items, ts) per user, by event time, ties in order."""
    by_user: dict[str, list] = defaultdict(list)
    for n, e in enumerate(events):
        by_user[e["user_id"]].append((e["ts"], n, e["item_id"]))
    out = {}
    for user, rows in by_user.items():
        rows.sort()
        rows = rows[-max_len:]
        out[user] = (tuple(r[2] for r in rows), tuple(r[0] for r in rows))
    return out


def store_contents(state_dir, topic) -> dict[str, tuple[tuple, tuple]]:
    with SequenceReader(state_dir, topic) as reader:
        return {u: (s.items, s.ts) for u, s in reader.as_dict().items()}


def stored_offsets_total(state_dir, topic) -> int:
    with SequenceReader(state_dir, topic) as reader:
        return sum(o or 0 for o in reader.next_offsets().values())


def end_offsets_total(bootstrap: str, topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        parts = consumer.partitions_for_topic(topic)
        tps = [TopicPartition(topic, p) for p in parts]
        return sum(consumer.end_offsets(tps).values())
    finally:
        consumer.close()


def read_topic(bootstrap: str, topic: str, n: int = 0, timeout: float = 30.0) -> list:
    """Read ``topic`` from the beginning to its current end (at least ``n``
    records)."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap, enable_auto_commit=False)
    got = []
    deadline = time.monotonic() + timeout
    try:
        tps = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic)]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps)
        while time.monotonic() < deadline:
            if len(got) >= n and all(consumer.position(tp) >= ends[tp] for tp in tps):
                break
            for records in consumer.poll(timeout_ms=200).values():
                got.extend(records)
    finally:
        consumer.close()
    return got


def ingest_settings(bootstrap, topic, group, state_dir, **extra):
    base = dict(
        bootstrap_servers=bootstrap,
        events_topic=topic,
        dlq_topic=f"{topic}.dlq",
        sequences_topic=f"{topic}.seq",
        group_id=group,
        state_dir=str(state_dir),
        session_timeout_ms=6000,
        heartbeat_interval_ms=500,
        poll_timeout_ms=100,
        sync_writes=False,
        lag_interval_s=0.5,
    )
    base.update(extra)
    return load_ingest_settings(**base)


@contextlib.contextmanager
def running_ingest(settings, on_commit=None):
    """An :class:`IngestApp` consuming in a thread; stopped on exit."""
    app = IngestApp(settings, on_commit=on_commit)
    errors = []

    def target():
        try:
            app.run()
        except BaseException as exc:  # surfaced to the test
            errors.append(exc)

    thread = threading.Thread(target=target, name="ingest", daemon=True)
    thread.start()
    try:
        wait_until(lambda: app.running.is_set() or errors, 30, what="ingest start")
        yield app
    finally:
        app.stop()
        thread.join(30)
        assert not thread.is_alive(), "ingest thread did not stop"
        if errors:
            raise errors[0]


def ingest_env(bootstrap, topic, group, state_dir, **extra) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        {
            "ELCREC_BOOTSTRAP_SERVERS": bootstrap,
            "ELCREC_EVENTS_TOPIC": topic,
            "ELCREC_DLQ_TOPIC": f"{topic}.dlq",
            "ELCREC_SEQUENCES_TOPIC": f"{topic}.seq",
            "ELCREC_GROUP_ID": group,
            "ELCREC_STATE_DIR": str(state_dir),
            "ELCREC_SESSION_TIMEOUT_MS": "6000",
            "ELCREC_HEARTBEAT_INTERVAL_MS": "500",
            "ELCREC_POLL_TIMEOUT_MS": "100",
        }
    )
    env.update({f"ELCREC_{k.upper()}": str(v) for k, v in extra.items()})
    return env


def start_ingest_process(env: dict, log_path: Path) -> subprocess.Popen:
    """``python -m elcrec.consumers.ingest`` with settings from ``env``."""
    log = open(log_path, "ab")
    return subprocess.Popen(
        [sys.executable, "-m", "elcrec.consumers.ingest"],
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        cwd=ROOT,
    )


def stop_process(proc: subprocess.Popen, sig=signal.SIGTERM, timeout=30.0) -> int:
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        return proc.wait(timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
        pytest.fail(f"ingest process ignored {sig!r} for {timeout}s")


# -- malformed records: (name, key, value, expected dead-letter reason) --------

GOOD = {
    "event_id": "x",
    "user_id": "u1",
    "item_id": "i1",
    "event_type": "click",
    "ts": 1_733_300_000_000,
}


def _bad(**changes) -> bytes:
    body = {k: v for k, v in GOOD.items() if k not in changes or changes[k] != ...}
    body.update({k: v for k, v in changes.items() if v is not ...})
    return json.dumps(body).encode()


MALFORMED = [
    ("invalid_json", b"u1", b'{"event_id": "x",', "invalid_json"),
    ("trailing_garbage", b"u1", _bad() + b"}}", "invalid_json"),
    ("json_array", b"u1", b"[1, 2, 3]", "not_an_object"),
    ("json_string", b"u1", b'"click"', "not_an_object"),
    ("json_null", b"u1", b"null", "not_an_object"),
    ("json_number", b"u1", b"42", "not_an_object"),
    ("empty_value", b"u1", b"", "empty_value"),
    ("tombstone", b"u1", None, "empty_value"),
    ("huge_value", b"u1", _bad(padding="x" * 100_000), "too_large"),
    ("non_utf8_value", b"u1", b'{"event_id": "\xff\xfe"}', "not_utf8"),
    ("missing_event_id", b"u1", _bad(event_id=...), "missing_field"),
    ("missing_user_id", b"u1", _bad(user_id=...), "missing_field"),
    ("missing_ts", b"u1", _bad(ts=...), "missing_field"),
    ("user_id_number", b"1", _bad(user_id=1), "wrong_type"),
    ("item_id_null", b"u1", _bad(item_id=None), "wrong_type"),
    ("item_id_object", b"u1", _bad(item_id={"id": 1}), "wrong_type"),
    ("empty_user_id", b"", _bad(user_id=""), "empty_field"),
    ("overlong_item_id", b"u1", _bad(item_id="i" * 300), "field_too_long"),
    ("unknown_event_type", b"u1", _bad(event_type="hover"), "unknown_event_type"),
    ("event_type_upper", b"u1", _bad(event_type="CLICK"), "unknown_event_type"),
    ("ts_bool", b"u1", _bad(ts=True), "bad_timestamp"),
    ("ts_float", b"u1", _bad(ts=1.7333e12), "bad_timestamp"),
    ("ts_garbage_string", b"u1", _bad(ts="yesterday"), "bad_timestamp"),
    ("ts_negative", b"u1", _bad(ts=-5), "bad_timestamp"),
    ("ts_in_seconds", b"u1", _bad(ts=1_733_300_000), "bad_timestamp"),
    ("ts_far_future", b"u1", _bad(ts=4_102_444_800_000), "bad_timestamp"),
    ("ts_iso_year_9999", b"u1", _bad(ts="9999-01-01T00:00:00Z"), "bad_timestamp"),
    ("null_key", None, _bad(), "missing_key"),
    ("key_differs", b"u2", _bad(), "key_mismatch"),
    ("non_utf8_key", b"\xc3\x28", _bad(), "not_utf8"),
]
