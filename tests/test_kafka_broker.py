"""The broker fixture and kafka-python work together against Kafka 4.x."""

from __future__ import annotations

import time

import pytest
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

pytestmark = pytest.mark.kafka


def _consume(consumer, n: int, timeout: float = 30.0) -> list:
    got = []
    deadline = time.monotonic() + timeout
    while len(got) < n and time.monotonic() < deadline:
        for records in consumer.poll(timeout_ms=500).values():
            got.extend(records)
    return got


def test_keyed_records_with_headers_round_trip_across_partitions(bootstrap, make_topic):
    topic = make_topic(partitions=3)
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(30):
        producer.send(
            topic,
            key=f"user-{i % 5}".encode(),
            value=f"event-{i}".encode(),
            headers=[("source", b"test"), ("seq", str(i).encode())],
        )
    producer.flush()
    producer.close()

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        consumer_timeout_ms=20000,
    )
    records = _consume(consumer, 30)
    consumer.close()

    assert len(records) == 30
    assert {r.value.decode() for r in records} == {f"event-{i}" for i in range(30)}
    # Records with one key share one partition, and keep their order there.
    by_key: dict[bytes, set[int]] = {}
    for r in records:
        by_key.setdefault(r.key, set()).add(r.partition)
        assert dict(r.headers)["source"] == b"test"
        assert r.value.decode() == f"event-{int(dict(r.headers)['seq'])}"
    assert all(len(parts) == 1 for parts in by_key.values())
    assert len({p for parts in by_key.values() for p in parts}) > 1
    for key in by_key:
        seqs = [int(dict(r.headers)["seq"]) for r in records if r.key == key]
        assert seqs == sorted(seqs)


def test_group_commit_then_resume_reads_only_the_rest(
    bootstrap, make_topic, make_group
):
    topic = make_topic(partitions=2)
    group = make_group()
    producer = KafkaProducer(bootstrap_servers=bootstrap)
    for i in range(20):
        producer.send(topic, key=str(i).encode(), value=str(i).encode())
    producer.flush()

    first = KafkaConsumer(
        topic,
        group_id=group,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    seen = _consume(first, 20)
    assert len(seen) == 20
    first.commit()
    committed = {
        tp.partition: first.committed(tp)
        for tp in (TopicPartition(topic, 0), TopicPartition(topic, 1))
    }
    first.close()
    assert sum(committed.values()) == 20

    for i in range(20, 25):
        producer.send(topic, key=str(i).encode(), value=str(i).encode())
    producer.flush()
    producer.close()

    second = KafkaConsumer(
        topic,
        group_id=group,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    rest = _consume(second, 5)
    # Nothing more arrives: the committed part is not read again.
    rest += _consume(second, 1, timeout=2.0)
    second.close()
    assert sorted(int(r.value) for r in rest) == [20, 21, 22, 23, 24]
