"""``elcrec topics``: create elcrec's Kafka topics (existing ones are kept)."""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka",
        help="Kafka bootstrap address (default: $ELCREC_BOOTSTRAP_SERVERS or "
        "$KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    parser.add_argument(
        "--partitions",
        type=int,
        default=6,
        help="partitions of the events and sequences topics (default 6)",
    )
    parser.add_argument("--replication", type=int, default=1, help="(default 1)")
    parser.add_argument(
        "--retention-hours",
        type=float,
        default=7 * 24,
        help="retention of events, models and drift records (default 168)",
    )
    parser.add_argument(
        "--dlq-retention-hours",
        type=float,
        default=30 * 24,
        help="retention of the dead-letter topic (default 720)",
    )


def main(args: argparse.Namespace) -> int:
    from elcrec.exceptions import ConfigError
    from elcrec.stream.kafka_options import client_options, load_client_settings
    from elcrec.stream.topics import default_topics, ensure_topics

    if args.partitions < 1 or args.replication < 1:
        raise ConfigError("--partitions and --replication must be at least 1")
    specs = default_topics(
        partitions=args.partitions,
        replication=args.replication,
        retention_ms=int(args.retention_hours * 3600 * 1000),
        dlq_retention_ms=int(args.dlq_retention_hours * 3600 * 1000),
    )
    kafka = load_client_settings(args.kafka)
    created = ensure_topics(
        kafka.bootstrap_servers, specs, client_options=client_options(kafka)
    )
    for name, state in created.items():
        print(f"{name}\t{state}")
    return 0
