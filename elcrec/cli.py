"""The ``elcrec`` command line: one entry point, one module per subcommand.

Each subcommand lives in ``elcrec/commands/<name>.py`` and provides
``add_arguments(parser)`` and ``main(args) -> int``. Command modules import their
heavy dependencies (torch, kafka-python, rocksdict) inside ``main``, so ``--help``
stays fast and one command's dependencies never slow another.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from elcrec.exceptions import ElcrecError

logger = logging.getLogger(__name__)

# name -> (module, one-line help); kept here so --help needs no imports.
COMMANDS: dict[str, tuple[str, str]] = {
    "run": ("elcrec.commands.run", "run the whole job (ingest + trainer)"),
    "train": ("elcrec.commands.train", "train a model offline on a data set"),
    "evaluate": ("elcrec.commands.evaluate", "evaluate a trained model offline"),
    "replay": ("elcrec.commands.replay", "replay a data set as click events to Kafka"),
    "ingest": ("elcrec.commands.ingest", "consume click events into the RocksDB store"),
    "trainer": (
        "elcrec.commands.trainer",
        "learn from sequence updates, publish models",
    ),
    "topics": ("elcrec.commands.topics", "create elcrec's Kafka topics"),
    "drift-report": ("elcrec.commands.drift_report", "render an intent-drift report"),
    "health": ("elcrec.commands.health", "check a container's ingest or trainer"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="elcrec",
        description="Streaming recommender that learns users' intents continuously.",
    )
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="logging level (default INFO)",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name, (module, help_text) in COMMANDS.items():
        p = sub.add_parser(name, help=help_text, description=help_text)
        p.set_defaults(_module=module)
        if _is_built(module):
            importlib.import_module(module).add_arguments(p)
    return parser


def _is_built(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=args.log_level,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.log_level != "DEBUG":
        # kafka-python narrates every connection at INFO; operators need less.
        logging.getLogger("kafka").setLevel(logging.WARNING)
    if not _is_built(args._module):
        print(f"elcrec {args.command}: not built yet in this version", file=sys.stderr)
        return 3
    try:
        return importlib.import_module(args._module).main(args) or 0
    except ElcrecError as exc:
        print(f"elcrec {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
