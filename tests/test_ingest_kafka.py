"""The ingest consumer against the real broker and real RocksDB files.

Real data: the first events (in time order) of ../shared/data/ml-100k.inter
and grocery_train.tsv, a subset so that the suite stays within minutes on two
cores.
"""

from __future__ import annotations

import json
import random
import signal
import threading
import time
import urllib.request
from collections import Counter

import pytest
from ingest_helpers import (
    MALFORMED,
    end_offsets_total,
    event,
    events_from_interactions,
    expected_sequences,
    ingest_env,
    ingest_settings,
    produce,
    read_topic,
    running_ingest,
    start_ingest_process,
    stop_process,
    store_contents,
    stored_offsets_total,
    wait_until,
)
from kafka import KafkaProducer

from elcrec.data import read_interactions
from elcrec.state.store import StoreOptions
from elcrec.stream import SequenceUpdate
from elcrec.stream.topics import TopicSpec, ensure_topics

pytestmark = pytest.mark.kafka

T0 = 1_733_300_000_000
STORED = StoreOptions().max_sequence_length  # items kept per user (default)


@pytest.fixture
def ingest_topics(bootstrap, make_topic):
    """Factory: an events topic with its dead-letter and sequences topics
    (named ``<events>.dlq`` and ``<events>.seq``, as ``ingest_settings`` uses)."""

    def make(partitions: int = 3) -> str:
        topic = make_topic(partitions=partitions)
        ensure_topics(
            bootstrap,
            [
                TopicSpec(f"{topic}.dlq", 1),
                TopicSpec(f"{topic}.seq", partitions, configs={}),
            ],
        )
        return topic

    return make


def latest_updates(bootstrap, topic, n) -> tuple[dict[str, SequenceUpdate], Counter]:
    """The highest-version update per user on the sequences topic, and how
    many records each (user, version) pair had."""
    records = read_topic(bootstrap, f"{topic}.seq", n)
    best: dict[str, SequenceUpdate] = {}
    copies: Counter = Counter()
    for rec in records:
        update = SequenceUpdate.model_validate_json(rec.value)
        assert rec.key == update.user_id.encode()
        copies[(update.user_id, update.version)] += 1
        if update.user_id not in best or update.version > best[update.user_id].version:
            best[update.user_id] = update
    return best, copies


def test_replay_of_real_data_equals_sequences_built_from_the_file(
    bootstrap, ingest_topics, make_group, shared_data, tmp_path
):
    # The first 20 000 ratings of ml-100k in time order (943 users).
    interactions = read_interactions(shared_data / "ml-100k.inter")[:20_000]
    events = events_from_interactions(interactions)
    topic = ingest_topics(partitions=3)
    produce(bootstrap, topic, events)

    settings = ingest_settings(
        bootstrap, topic, make_group(), tmp_path, metrics_port=0, sync_writes=True
    )
    with running_ingest(settings) as app:
        wait_until(
            lambda: stored_offsets_total(tmp_path, topic) == len(events),
            60,
            what="all events stored",
        )
        wait_until(lambda: app.metrics.published._value.get() > 0, 10)
        metrics = urllib.request.urlopen(
            f"http://127.0.0.1:{app.metrics_port}/metrics", timeout=5
        ).read()

    expected = expected_sequences(events, settings.max_sequence_length)
    assert store_contents(tmp_path, topic) == expected

    # Every user's newest published update carries the stored sequence.
    best, _ = latest_updates(bootstrap, topic, len(expected))
    assert {u: (tuple(b.items), tuple(b.ts)) for u, b in best.items()} == expected
    counts = Counter(e["user_id"] for e in events)
    assert {u: b.version for u, b in best.items()} == dict(counts)

    text = metrics.decode()
    assert "elcrec_ingest_records_consumed_total 20000.0" in text
    assert "elcrec_ingest_events_applied_total 20000.0" in text
    assert 'elcrec_state_users{partition="0"}' in text
    assert 'elcrec_ingest_consumer_lag{partition="0"}' in text
    assert 'elcrec_state_size_bytes{partition="0"}' in text
    assert "elcrec_ingest_batch_seconds_bucket" in text


def test_malformed_records_go_to_the_dead_letter_topic_with_their_reason(
    bootstrap, ingest_topics, make_group, tmp_path
):
    topic = ingest_topics(partitions=1)
    producer = KafkaProducer(bootstrap_servers=bootstrap, max_request_size=2**21)
    sent = []  # (offset, name, reason)
    good = []
    for n, (name, key, value, reason) in enumerate(MALFORMED):
        g = event(n, "u1", f"i{n}", T0 + n)
        good.append(g)
        producer.send(topic, key=b"u1", value=json.dumps(g).encode()).get(10)
        meta = producer.send(
            topic, key=key, value=value, headers=[("origin", name.encode())]
        ).get(10)
        sent.append((meta.offset, name, reason))
    producer.close()

    settings = ingest_settings(bootstrap, topic, make_group(), tmp_path)
    with running_ingest(settings) as app:
        total = 2 * len(MALFORMED)
        wait_until(lambda: stored_offsets_total(tmp_path, topic) == total, 30)
        wait_until(lambda: app.metrics.consumed._value.get() == total, 10)
        dead_by_reason = {
            s.labels["reason"]: int(s.value)
            for metric in app.metrics.dead_lettered.collect()
            for s in metric.samples
            if s.name.endswith("_total")
        }

    # The good records around the bad ones are all applied, in order.
    assert store_contents(tmp_path, topic) == expected_sequences(good, STORED)

    dlq = read_topic(bootstrap, f"{topic}.dlq", len(MALFORMED))
    assert len(dlq) == len(MALFORMED)
    got = {}
    for rec in dlq:
        headers = dict(rec.headers)
        assert headers["elcrec.source.topic"] == topic.encode()
        assert headers["elcrec.source.partition"] == b"0"
        assert headers["elcrec.dlq.detail"]
        got[int(headers["elcrec.source.offset"])] = (
            headers["origin"].decode(),
            headers["elcrec.dlq.reason"].decode(),
        )
    assert got == {offset: (name, reason) for offset, name, reason in sent}
    assert dead_by_reason == dict(Counter(reason for _, _, reason in sent))
    huge = next(r for r in dlq if dict(r.headers)["origin"] == b"huge_value")
    assert len(huge.value) == settings.dlq_max_value_bytes
    assert int(dict(huge.headers)["elcrec.dlq.truncated"]) > 100_000


def test_two_consumers_split_partitions_and_the_survivor_takes_over(
    bootstrap, ingest_topics, make_group, tmp_path
):
    topic = ingest_topics(partitions=4)
    group = make_group()
    rng = random.Random(4)
    events = [
        event(n, f"u{rng.randrange(60)}", f"i{rng.randrange(200)}", T0 + n)
        for n in range(6000)
    ]
    first, second = events[:3000], events[3000:]
    a_settings = ingest_settings(bootstrap, topic, group, tmp_path, client_id="a")
    b_settings = ingest_settings(bootstrap, topic, group, tmp_path, client_id="b")

    with running_ingest(a_settings) as a:
        with running_ingest(b_settings) as b:
            wait_until(
                lambda: (
                    len(a.store.partitions) + len(b.store.partitions) == 4
                    and a.store.partitions
                    and b.store.partitions
                ),
                30,
                what="both consumers own partitions",
            )
            assert not set(a.store.partitions) & set(b.store.partitions)
            produce(bootstrap, topic, first)
            wait_until(lambda: stored_offsets_total(tmp_path, topic) == 3000, 30)
            applied_by_b = b.metrics.applied._value.get()
            assert 0 < applied_by_b < 3000
        # b stopped (left the group): a owns everything after the rebalance.
        wait_until(lambda: len(a.store.partitions) == 4, 30, what="takeover")
        produce(bootstrap, topic, second)
        wait_until(lambda: stored_offsets_total(tmp_path, topic) == 6000, 30)

    got = store_contents(tmp_path, topic)
    assert got == expected_sequences(events, STORED)


def test_kill_9_at_random_points_loses_nothing_and_applies_nothing_twice(
    bootstrap, ingest_topics, make_group, shared_data, tmp_path
):
    # grocery_train.tsv, first 12 000 events in time order; de-duplication is
    # off, so only the stored offsets can keep a replayed record from being
    # applied twice (and versions count every application).
    interactions = read_interactions(shared_data / "grocery_train.tsv")[:12_000]
    events = events_from_interactions(interactions, "grocery")
    topic = ingest_topics(partitions=3)
    env = ingest_env(
        bootstrap,
        topic,
        make_group(),
        tmp_path / "state",
        dedup_window=0,
        max_poll_records=300,
        group_instance_id="ingest-1",
    )
    log = tmp_path / "ingest.log"
    rng = random.Random(9)

    # Produce in the background at a steady pace so kills land mid-stream.
    def feed():
        for start in range(0, len(events), 600):
            produce(bootstrap, topic, events[start : start + 600])
            time.sleep(0.25)

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    kills = 0
    for _ in range(4):
        proc = start_ingest_process(env, log)
        before = stored_offsets_total(tmp_path / "state", topic)
        try:
            wait_until(
                lambda b=before: stored_offsets_total(tmp_path / "state", topic) > b,
                60,
                what="progress after restart",
            )
            time.sleep(rng.uniform(0.05, 0.8))
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            kills += 1
    feeder.join(60)

    proc = start_ingest_process(env, log)
    try:
        wait_until(
            lambda: (
                stored_offsets_total(tmp_path / "state", topic)
                == end_offsets_total(bootstrap, topic)
                == len(events)
            ),
            90,
            what="all events stored after the kills",
        )
    finally:
        rc = stop_process(proc, signal.SIGTERM)
    assert rc == 0, log.read_text()[-3000:]
    assert kills == 4

    state = tmp_path / "state"
    assert store_contents(state, topic) == expected_sequences(events, STORED)

    # Published updates: at least once, and the newest per user is the store's.
    expected = expected_sequences(events, STORED)
    best, _copies = latest_updates(bootstrap, topic, len(expected))
    assert {u: (tuple(b.items), tuple(b.ts)) for u, b in best.items()} == expected
    counts = Counter(e["user_id"] for e in events)
    assert {u: b.version for u, b in best.items()} == dict(counts)


def test_consumer_resumes_by_itself_after_the_broker_restarts(
    make_group, tmp_path, kafka_broker
):
    from conftest import kafka_local

    broker = kafka_local.LocalKafka(workdir=tmp_path / "broker")
    broker.start()
    try:
        address = broker.bootstrap
        topic = "restart-events"
        ensure_topics(
            address,
            [
                TopicSpec(topic, 2),
                TopicSpec(f"{topic}.dlq", 1),
                TopicSpec(f"{topic}.seq", 2),
            ],
        )
        rng = random.Random(5)
        events = [
            event(n, f"u{rng.randrange(40)}", f"i{rng.randrange(100)}", T0 + n)
            for n in range(6000)
        ]
        state = tmp_path / "state"
        settings = ingest_settings(
            address, topic, make_group(), state, max_poll_records=50, sync_writes=True
        )
        produce(address, topic, events[:4000])

        # Kill the broker (SIGKILL, so it is gone at once) from the consumer's
        # own commit hook once 500 events are stored: mid-backlog for sure.
        stored = Counter()
        killed = []

        def kill_mid_backlog(partition, result):
            stored[partition] = result.next_offset or 0
            if not killed and sum(stored.values()) >= 500:
                killed.append(True)
                broker.kill()

        with running_ingest(settings, on_commit=kill_mid_backlog) as app:
            wait_until(lambda: killed, 30, what="broker killed")
            assert stored_offsets_total(state, topic) < 4000
            time.sleep(2)
            broker.start()
            produce(address, topic, events[4000:])
            wait_until(
                lambda: stored_offsets_total(state, topic) == 6000,
                90,
                what="ingest after the broker restart",
            )
            assert app.running.is_set()
            # Updates that failed while the broker was away are sent again.
            wait_until(lambda: not any(app._unpublished.values()), 30)
        assert store_contents(state, topic) == expected_sequences(events, STORED)
        best, _ = latest_updates(address, topic, 40)
        counts = Counter(e["user_id"] for e in events)
        assert {u: b.version for u, b in best.items()} == dict(counts)
    finally:
        broker.cleanup()


def test_busy_user_costs_one_update_per_batch_and_duplicates_apply_once(
    bootstrap, ingest_topics, make_group, tmp_path
):
    topic = ingest_topics(partitions=1)
    events = [event(n, "busy", f"i{n}", T0 + n) for n in range(1500)]
    events += [event(n, "calm", f"c{n}", T0 + n) for n in range(2000, 2003)]
    # A producer retry: the same events again, with the same event ids.
    produce(bootstrap, topic, events + events[:100])

    settings = ingest_settings(
        bootstrap, topic, make_group(), tmp_path, max_poll_records=1000
    )
    with running_ingest(settings) as app:
        wait_until(lambda: stored_offsets_total(tmp_path, topic) == 1603, 30)
        wait_until(lambda: app.metrics.published._value.get() >= 2, 10)
        duplicates = app.metrics.duplicates._value.get()
        batches = sum(
            s.value
            for metric in app.metrics.batch_records.collect()
            for s in metric.samples
            if s.name.endswith("_count")
        )

    assert duplicates == 100
    stored = store_contents(tmp_path, topic)
    assert stored == expected_sequences(events, STORED)
    _, copies = latest_updates(bootstrap, topic, 2)
    busy = [v for (user, v) in copies if user == "busy"]
    assert 1 <= len(busy) <= batches <= 4  # not one per event
    assert max(busy) == 1500
