"""``elcrec trainer``: learn from ``elcrec.sequences`` and publish models.

Options not given on the command line come from ``ELCREC_TRAINER_*`` environment
variables (see :class:`elcrec.consumers.trainer.TrainerSettings`).
"""

from __future__ import annotations

import argparse

# (flag, settings field, type, help)
OPTIONS = [
    ("--kafka", "bootstrap_servers", str, "Kafka bootstrap address"),
    ("--group", "group_id", str, "consumer group id (default elcrec-trainer)"),
    ("--topic", "sequences_topic", str, "sequences topic to learn from"),
    ("--work-dir", "work_dir", str, "folder of models/ and checkpoint.pt"),
    ("--warm-start", "warm_start", str, "published model directory to start from"),
    ("--preset", "preset", str, "model preset: beauty, sports, toys, yelp"),
    ("--n-intents", "n_intents", int, "number of intents K"),
    ("--n-layer", "n_layer", int, "transformer layers"),
    ("--block-size", "block_size", int, "longest sequence T"),
    ("--lr", "lr", float, "Adam learning rate"),
    ("--fresh-per-step", "fresh_per_step", int, "fresh sequences per step"),
    ("--replay-per-step", "replay_per_step", int, "replayed sequences per step"),
    ("--publish-every-steps", "publish_every_steps", int, "publish every N steps"),
    ("--publish-every-s", "publish_every_s", float, "publish every T seconds"),
    ("--metrics-port", "metrics_port", int, "serve Prometheus metrics on this port"),
    ("--device", "device", str, "cpu or cuda"),
    ("--session-timeout-ms", "session_timeout_ms", int, "group session timeout"),
]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, dest, type_, help_text in OPTIONS:
        parser.add_argument(flag, dest=dest, type=type_, help=help_text)


def main(args: argparse.Namespace) -> int:
    from elcrec.consumers.trainer import TrainerApp, load_trainer_settings
    from elcrec.stream.topics import check_reachable

    settings = load_trainer_settings(
        **{dest: getattr(args, dest) for _, dest, *_ in OPTIONS}
    )
    # One clear error, not a page of client warnings, when Kafka is not there.
    check_reachable(settings.bootstrap_servers, wait_s=30.0)
    app = TrainerApp(settings)
    app.install_signal_handlers()
    app.run()
    return 0
