"""``elcrec drift-report``: the trainer's intent drift as one HTML page.

Reads ``drift.jsonl`` (and ``drift.jsonl.1``) and the published models of a
trainer work folder and writes a self-contained page: intent shares by
version, divergence with the alarms marked, live quality, center movement, a
map of the latest centers, and the alarms with their rising and falling
intents. Ends with one JSON line (the file, windows, alarms, versions).
"""

from __future__ import annotations

import argparse
import json


def add_arguments(parser: argparse.ArgumentParser) -> None:
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--work-dir",
        help="the trainer's work folder, or that of elcrec run (its trainer/ is used)",
    )
    where.add_argument(
        "--models", help="a models folder; the drift log is read from its parent"
    )
    parser.add_argument(
        "--out",
        default="drift-report.html",
        help="HTML file to write (default drift-report.html)",
    )
    parser.add_argument(
        "--top-intents",
        type=int,
        default=10,
        help="intents shown in the share heatmap (default 10)",
    )


def main(args: argparse.Namespace) -> int:
    from elcrec.exceptions import ConfigError
    from elcrec.report import find_trainer_dir, write_report

    if args.top_intents < 1:
        raise ConfigError(f"--top-intents must be >= 1, got {args.top_intents}")
    trainer_dir = find_trainer_dir(args.work_dir, args.models)
    summary = write_report(
        trainer_dir, args.out, models_dir=args.models, top_intents=args.top_intents
    )
    print(json.dumps(summary.to_dict()))
    return 0
