"""``elcrec topics``: create elcrec's Kafka topics (existing ones are kept)."""

from __future__ import annotations

import argparse
import os


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--kafka",
        default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"),
        help="Kafka bootstrap address (default: $KAFKA_BOOTSTRAP_SERVERS)",
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
    from elcrec.stream.kafka_options import load_client_options
    from elcrec.stream.topics import default_topics, ensure_topics

    if args.partitions < 1 or args.replication < 1:
        raise ConfigError("--partitions and --replication must be at least 1")
    specs = default_topics(
        partitions=args.partitions,
        replication=args.replication,
        retention_ms=int(args.retention_hours * 3600 * 1000),
        dlq_retention_ms=int(args.dlq_retention_hours * 3600 * 1000),
    )
    security = load_client_options()  # ELCREC_SECURITY_PROTOCOL...
    created = ensure_topics(args.kafka, specs, client_options=security)
    for name, state in created.items():
        print(f"{name}\t{state}")
    return 0
