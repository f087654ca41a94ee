"""``elcrec replay``: send a data set to Kafka as click events, in time order.

``--data`` is a file any offline loader reads (sequence file, RecBole .inter,
CSV/TSV/JSON lines) or ``synthetic`` for the generator with planted intents
(``--shift-at N`` plants an intent shift at event N).
"""

from __future__ import annotations

import argparse
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--data", required=True, help="data file, or 'synthetic' for the generator"
    )
    parser.add_argument("--topic", default="elcrec.events", help="events topic")
    parser.add_argument(
        "--kafka",
        help="Kafka bootstrap address (default: $ELCREC_BOOTSTRAP_SERVERS or "
        "$KAFKA_BOOTSTRAP_SERVERS, else 127.0.0.1:9092)",
    )
    parser.add_argument("--rate", type=float, help="events per second at most")
    parser.add_argument(
        "--speedup",
        type=float,
        help="keep the data's time gaps divided by X (default: as fast as allowed)",
    )
    parser.add_argument("--limit", type=int, help="send only the first N events")
    parser.add_argument(
        "--format", default="auto", help="auto, seq, inter, csv, tsv, jsonl"
    )
    parser.add_argument("--user-col", help="user column of a table file")
    parser.add_argument("--item-col", help="item column of a table file")
    parser.add_argument("--time-col", help="time column of a table file")
    parser.add_argument(
        "--event-type",
        default="click",
        choices=["view", "click", "add_to_cart", "purchase"],
    )
    parser.add_argument(
        "--id-prefix",
        help="event ids are PREFIX-n (default: the file name, or synthetic-SEED)",
    )
    parser.add_argument(
        "--now",
        action="store_true",
        help="stamp events with the wall clock at send time",
    )
    syn = parser.add_argument_group("synthetic generator (--data synthetic)")
    syn.add_argument("--users", type=int, default=1000)
    syn.add_argument("--items", type=int, default=500)
    syn.add_argument("--intents", type=int, default=8)
    syn.add_argument("--events-per-user", type=int, default=30)
    syn.add_argument("--shift-at", type=int, help="event index of the intent shift")
    syn.add_argument("--seed", type=int, default=0)


def main(args: argparse.Namespace) -> int:
    from elcrec.exceptions import ConfigError
    from elcrec.stream.events import EventType
    from elcrec.stream.kafka_options import client_options, load_client_settings
    from elcrec.stream.replay import ReplayOptions, load_interactions, replay

    kafka = load_client_settings(args.kafka)
    synthetic = None
    if args.data == "synthetic":
        synthetic = dict(
            n_users=args.users,
            n_items=args.items,
            n_intents=args.intents,
            events_per_user=args.events_per_user,
            shift_at=args.shift_at,
            seed=args.seed,
        )
        prefix = f"synthetic-{args.seed}"
    else:
        prefix = Path(args.data).stem
    try:
        options = ReplayOptions(
            rate=args.rate,
            speedup=args.speedup,
            limit=args.limit,
            event_type=EventType(args.event_type),
            id_prefix=args.id_prefix or prefix,
            stamp_now=args.now,
        )
        interactions = load_interactions(
            args.data,
            args.format,
            user_col=args.user_col,
            item_col=args.item_col,
            time_col=args.time_col,
            synthetic=synthetic,
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    from kafka.errors import KafkaError

    from elcrec.stream.topics import check_reachable

    check_reachable(kafka.bootstrap_servers)
    try:
        stats = replay(
            kafka.bootstrap_servers,
            args.topic,
            interactions,
            options,
            client_options=client_options(kafka),
        )
    except KafkaError as exc:
        raise ConfigError(
            f"cannot send to Kafka at {kafka.bootstrap_servers} (option --kafka): {exc}"
        ) from None
    print(f"sent {stats.sent} events to {args.topic} in {stats.seconds:.1f}s")
    return 0
