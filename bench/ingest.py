"""Ingest benchmark: elcrec's ingest consumer next to a bare kafka-python loop.

On one broker and one pre-filled topic, in the same run:

1. throughput: a bare kafka-python consume loop reads all records (nothing
   else), then the ingest consumer (validation, RocksDB write batches with
   fsync, dead-letter checks, sequence updates published to Kafka, Kafka
   offset commits) reads the same records; alternated ``--rounds`` times, each
   with a fresh consumer group and state folder. Both use the same consumer
   settings and are timed from the poll that returned the first records to
   the last record done, so group joins are not counted.
2. freshness: events produced at a steady ``--latency-rate`` for
   ``--latency-seconds``, each stamped with its send time; latency is the time
   from send to the durable store commit that makes it visible (measured in
   the owner process).

Usage::

    .venv/bin/python bench/ingest.py                     # local broker, ml-100k
    .venv/bin/python bench/ingest.py --kafka HOST:PORT --data synthetic
"""

from __future__ import annotations

import argparse
import json
import logging
import multiprocessing
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "deploy"))

logger = logging.getLogger("elcrec.bench.ingest")


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--kafka", help="existing broker (default: start a local one)")
    p.add_argument(
        "--data",
        default=str(ROOT.parent / "shared" / "data" / "ml-100k.inter"),
        help="data file, or 'synthetic' (default ../shared/data/ml-100k.inter)",
    )
    p.add_argument("--limit", type=int, help="use only the first N events")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--max-poll-records", type=int, default=5000)
    p.add_argument("--no-publish", action="store_true", help="sequence updates off")
    p.add_argument("--no-sync", action="store_true", help="no fsync per commit")
    p.add_argument("--latency-rate", type=float, default=2000.0)
    p.add_argument("--latency-seconds", type=float, default=10.0)
    p.add_argument("--json", help="also write the figures to this file")
    return p.parse_args(argv)


def load_events(args) -> list[tuple[bytes, bytes]]:
    from elcrec.stream.replay import ReplayOptions, iter_events, load_interactions

    if args.data == "synthetic":
        interactions = load_interactions(
            "synthetic",
            synthetic=dict(n_users=5000, n_items=2000, events_per_user=20),
        )
        prefix = "synthetic"
    else:
        interactions = load_interactions(args.data)
        prefix = Path(args.data).stem
    events = iter_events(
        interactions, ReplayOptions(limit=args.limit, id_prefix=prefix)
    )
    return [
        (e["user_id"].encode(), json.dumps(e, separators=(",", ":")).encode())
        for e in events
    ]


def create_topics(bootstrap, name, partitions):
    from elcrec.stream.topics import TopicSpec, ensure_topics

    ensure_topics(
        bootstrap,
        [
            TopicSpec(name, partitions),
            TopicSpec(f"{name}.dlq", 1),
            TopicSpec(f"{name}.seq", partitions),
        ],
    )


def produce_all(bootstrap, topic, records):
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap, linger_ms=20, batch_size=512 * 1024
    )
    for key, value in records:
        producer.send(topic, key=key, value=value)
    producer.flush()
    producer.close()


def consumer_config(args) -> dict:
    # Shared by both loops, so the comparison is like for like.
    return dict(
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=args.max_poll_records,
    )


def bare_loop(bootstrap, topic, n, args) -> float:
    """Events per second of a consume loop that does nothing with records."""
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-{uuid.uuid4().hex[:6]}",
        **consumer_config(args),
    )
    seen, first = 0, None
    while seen < n:
        t = time.perf_counter()
        polled = consumer.poll(timeout_ms=200, max_records=args.max_poll_records)
        got = sum(len(r) for r in polled.values())
        if got and first is None:
            first = t
        seen += got
    elapsed = time.perf_counter() - first
    consumer.close(autocommit=False)
    return n / elapsed


def ingest_settings(bootstrap, topic, args, state_dir, **extra):
    from elcrec.consumers.settings import load_ingest_settings

    return load_ingest_settings(
        bootstrap_servers=bootstrap,
        events_topic=topic,
        dlq_topic=f"{topic}.dlq",
        sequences_topic=f"{topic}.seq",
        group_id=f"bench-ingest-{uuid.uuid4().hex[:6]}",
        state_dir=state_dir,
        max_poll_records=args.max_poll_records,
        publish_sequences=not args.no_publish,
        sync_writes=not args.no_sync,
        **extra,
    )


def ingest_loop(bootstrap, topic, n, args) -> tuple[float, dict]:
    """Events per second of the ingest consumer over the same records."""
    from elcrec.consumers.ingest import IngestApp

    with tempfile.TemporaryDirectory(prefix="elcrec-bench-") as state:
        app = IngestApp(ingest_settings(bootstrap, topic, args, state))
        seen = [0]
        first = [None]
        done = threading.Event()
        step = app.step

        def timed_step():
            t = time.perf_counter()
            got = step()
            if got and first[0] is None:
                first[0] = t
            seen[0] += got
            if seen[0] >= n and not done.is_set():
                done.set()
                first.append(time.perf_counter())
                app.stop()
            return got

        app.step = timed_step
        app.run()
        elapsed = first[1] - first[0]
        m = app.metrics
        info = {
            "applied": m.applied._value.get(),
            "sequences_published": m.published._value.get(),
            "batches": sum(
                s.value
                for metric in m.batch_seconds.collect()
                for s in metric.samples
                if s.name.endswith("_count")
            ),
        }
    return n / elapsed, info


def paced_producer(bootstrap, topic, records, total, rate) -> None:
    """Send ``total`` events at ``rate`` per second, each stamped with its
    send time (runs in a child process)."""
    from kafka import KafkaProducer

    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=0)
    t0 = time.monotonic()
    for n in range(total):
        ahead = t0 + n / rate - time.monotonic()
        if ahead > 0:
            time.sleep(ahead)
        key, value = records[n % len(records)]
        event = json.loads(value)
        event["event_id"] = f"lat-{n}"
        event["ts"] = int(time.time() * 1000)
        producer.send(topic, key=key, value=json.dumps(event).encode())
    producer.flush()
    producer.close()


def round_robin_users(records):
    """Round-robin over users, so no user gets more events in one batch than
    its sequence keeps (each event's time must be in the stored sequence)."""
    rank: dict[bytes, int] = {}
    order = []
    for n, (key, _value) in enumerate(records):
        rank[key] = rank.get(key, 0) + 1
        order.append((rank[key], n))
    return [records[n] for _, n in sorted(order)]


def summarize(latencies: list[float], rate: float) -> dict:
    latencies = sorted(latencies)
    q = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "events": len(latencies),
        "rate": rate,
        "p50_ms": q[49],
        "p99_ms": q[98],
        "max_ms": latencies[-1],
    }


def bare_latency(bootstrap, topic, records, args) -> dict:
    """The same paced stream read by a bare consumer: send → poll returned."""
    from kafka import KafkaConsumer

    total = int(args.latency_rate * args.latency_seconds)
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"bench-bare-lat-{uuid.uuid4().hex[:6]}",
        **consumer_config(args),
    )
    while not consumer.assignment():
        consumer.poll(timeout_ms=100)
    ctx = multiprocessing.get_context("spawn")
    feeder = ctx.Process(
        target=paced_producer,
        args=(bootstrap, topic, records, total, args.latency_rate),
    )
    feeder.start()
    latencies = []
    deadline = time.monotonic() + args.latency_seconds + 30
    while len(latencies) < total and time.monotonic() < deadline:
        for batch in consumer.poll(timeout_ms=50).values():
            now = time.time() * 1000
            latencies.extend(now - json.loads(r.value)["ts"] for r in batch)
    feeder.join()
    consumer.close(autocommit=False)
    return summarize(latencies, args.latency_rate)


def latency_phase(bootstrap, topic, records, args) -> dict:
    """Produce at a steady rate with send-time stamps; measure send → stored."""
    from elcrec.consumers.ingest import IngestApp

    latencies: list[float] = []
    versions: dict[str, int] = {}

    def on_commit(_partition, result):
        for user_id, seq in result.touched.items():
            new = seq.version - versions.get(user_id, 0)
            versions[user_id] = seq.version
            for ts in seq.ts[-new:] if new > 0 else ():
                latencies.append(result.committed_at - ts)

    total = int(args.latency_rate * args.latency_seconds)
    with tempfile.TemporaryDirectory(prefix="elcrec-bench-") as state:
        app = IngestApp(
            ingest_settings(bootstrap, topic, args, state, poll_timeout_ms=50),
            on_commit=on_commit,
        )
        thread = threading.Thread(target=app.run, daemon=True)
        thread.start()
        while not app.store.partitions:
            time.sleep(0.05)  # joined and assigned
        time.sleep(0.5)

        # The producer runs in its own process, as producers do, so that it
        # does not compete with the consumer for this process's GIL.
        ctx = multiprocessing.get_context("spawn")
        feeder = ctx.Process(
            target=paced_producer,
            args=(bootstrap, topic, records, total, args.latency_rate),
        )
        feeder.start()
        feeder.join()
        deadline = time.monotonic() + 30
        while len(latencies) < total and time.monotonic() < deadline:
            time.sleep(0.05)
        app.stop()
        thread.join(30)

    return summarize(latencies, args.latency_rate)


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(message)s")
    broker = None
    bootstrap = args.kafka or os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if not bootstrap:
        import kafka_local

        broker = kafka_local.LocalKafka()
        bootstrap = broker.start()
    try:
        records = load_events(args)
        n = len(records)
        users = len({k for k, _ in records})
        topic = f"bench-events-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, topic, args.partitions)
        t = time.perf_counter()
        produce_all(bootstrap, topic, records)
        print(
            f"topic {topic}: {n} events, {users} users, {args.partitions} "
            f"partitions (produced in {time.perf_counter() - t:.1f}s)"
        )

        rows = []
        for r in range(args.rounds):
            bare = bare_loop(bootstrap, topic, n, args)
            ingest, info = ingest_loop(bootstrap, topic, n, args)
            rows.append((bare, ingest, info))
            print(
                f"round {r + 1}: bare {bare:,.0f} ev/s   ingest {ingest:,.0f} ev/s"
                f"   ratio {ingest / bare:.0%}   (batches {info['batches']:.0f}, "
                f"sequence updates {info['sequences_published']:.0f})"
            )
        bare_m = ingest_m = float("nan")
        if rows:
            bare_m = statistics.median(r[0] for r in rows)
            ingest_m = statistics.median(r[1] for r in rows)
            print(
                f"median: bare {bare_m:,.0f} ev/s, ingest {ingest_m:,.0f} ev/s, "
                f"ratio {ingest_m / bare_m:.0%}"
            )

        paced = round_robin_users(records)
        lat_topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, lat_topic, args.partitions)
        base = bare_latency(bootstrap, lat_topic, paced, args)
        lat_topic = f"bench-latency-{uuid.uuid4().hex[:6]}"
        create_topics(bootstrap, lat_topic, args.partitions)
        lat = latency_phase(bootstrap, lat_topic, paced, args)
        for name, figs in (
            ("bare consumer: send -> polled", base),
            ("ingest: send -> visible in store", lat),
        ):
            print(
                f"latency {name} at {figs['rate']:.0f} ev/s ({figs['events']} "
                f"events): p50 {figs['p50_ms']:.0f} ms, p99 {figs['p99_ms']:.0f} "
                f"ms, max {figs['max_ms']:.0f} ms"
            )
        figures = {
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "machine": f"{platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} cores",
            "data": args.data,
            "events": n,
            "users": users,
            "partitions": args.partitions,
            "publish_sequences": not args.no_publish,
            "sync_writes": not args.no_sync,
            "rounds": [
                {"bare": b, "ingest": i, "ratio": i / b, **info} for b, i, info in rows
            ],
            "median_ratio": ingest_m / bare_m,
            "latency": lat,
            "bare_latency": base,
            "load_average": os.getloadavg(),
        }
        if args.json:
            Path(args.json).write_text(json.dumps(figures, indent=2))
    finally:
        if broker is not None:
            broker.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
