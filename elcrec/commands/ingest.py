"""``elcrec ingest``: consume click events into the RocksDB sequence store.

Options not given on the command line come from ``ELCREC_*`` environment
variables (see :class:`elcrec.consumers.settings.IngestSettings`).
"""

from __future__ import annotations

import argparse


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--group", dest="group_id", help="consumer group id")
    parser.add_argument("--state", dest="state_dir", help="state folder (RocksDB)")
    parser.add_argument(
        "--kafka",
        dest="bootstrap_servers",
        help="Kafka bootstrap address (default: $KAFKA_BOOTSTRAP_SERVERS)",
    )
    parser.add_argument("--topic", dest="events_topic", help="events topic")
    parser.add_argument(
        "--instance-id",
        dest="group_instance_id",
        help="static group membership id (fast restarts)",
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics on this port"
    )
    parser.add_argument(
        "--max-sequence-length", type=int, help="items kept per user (default 50)"
    )
    parser.add_argument(
        "--dedup-window",
        type=int,
        help="event ids remembered per partition (default 100000)",
    )
    parser.add_argument(
        "--count",
        dest="counted_event_types",
        nargs="+",
        metavar="TYPE",
        help="event types appended to sequences (default: all four)",
    )
    parser.add_argument(
        "--no-publish",
        dest="publish_sequences",
        action="store_const",
        const=False,
        help="do not publish sequence updates",
    )
    parser.add_argument(
        "--session-timeout-ms", type=int, help="consumer group session timeout"
    )


def main(args: argparse.Namespace) -> int:
    from elcrec.consumers.ingest import IngestApp
    from elcrec.consumers.settings import load_ingest_settings
    from elcrec.stream.topics import check_reachable

    fields = (
        "group_id",
        "state_dir",
        "bootstrap_servers",
        "events_topic",
        "group_instance_id",
        "metrics_port",
        "max_sequence_length",
        "dedup_window",
        "counted_event_types",
        "publish_sequences",
        "session_timeout_ms",
    )
    settings = load_ingest_settings(**{f: getattr(args, f, None) for f in fields})
    # One clear error, not a page of client warnings, when Kafka is not there.
    check_reachable(settings.bootstrap_servers, wait_s=30.0)
    app = IngestApp(settings)
    app.install_signal_handlers()
    app.run()
    return 0
