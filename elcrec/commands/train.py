"""``elcrec train``: train a model offline on a data set (leave-one-out protocol).

Trains with early stopping on validation NDCG@20, keeps ``best.pt`` and
``last.pt`` in ``--out``, then prints one JSON line with the test metrics of
the best checkpoint (``hr@5 ndcg@5 hr@10 ndcg@10 hr@20 ndcg@20`` and ``split``).
"""

from __future__ import annotations

import argparse
import json
import sys

from elcrec.exceptions import ConfigError

FORMATS = ["auto", "seq", "inter", "csv", "tsv", "jsonl"]
MODELS = ["elcrec", "sasrec", "most-popular"]


def add_data_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="data set file")
    parser.add_argument("--format", default="auto", choices=FORMATS, help="file format")
    parser.add_argument("--user-col", help="user column (csv/tsv/jsonl/inter)")
    parser.add_argument("--item-col", help="item column (csv/tsv/jsonl/inter)")
    parser.add_argument("--time-col", help="time column (csv/tsv/jsonl/inter)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--model", default="elcrec", choices=MODELS)
    parser.add_argument(
        "--preset", help="paper settings: beauty, sports, toys, yelp (default: none)"
    )
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--patience", type=int, default=40, help="early-stop patience")
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    parser.add_argument("--out", default="runs/train", help="checkpoint folder")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a model config field, e.g. --set n_intents=64 (repeatable)",
    )
    parser.add_argument(
        "--resume", action="store_true", help="continue from OUT/last.pt"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def parse_overrides(items: list[str]) -> dict:
    """``["n_intents=64", "pooling=real"]`` -> typed config overrides."""
    from elcrec.exceptions import ConfigError
    from elcrec.model import ELCRecConfig

    types = {name: type(value) for name, value in ELCRecConfig().to_dict().items()}
    out = {}
    for item in items:
        name, sep, raw = item.partition("=")
        if not sep or name not in types:
            raise ConfigError(
                f"--set {item!r}: expected FIELD=VALUE with FIELD one of {sorted(types)}"
            )
        try:
            out[name] = types[name](raw)
        except ValueError as exc:
            raise ConfigError(f"--set {item!r}: {exc}") from exc
    return out


def model_config(preset: str | None, overrides: dict, sasrec: bool):
    from elcrec.exceptions import ConfigError
    from elcrec.model import ELCRecConfig

    try:
        cfg = (
            ELCRecConfig.preset(preset, **overrides)
            if preset
            else ELCRecConfig(**overrides)
        )
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    return cfg.sasrec() if sasrec else cfg


def load_data(args):
    from elcrec.data import load_sequences

    return load_sequences(
        args.data,
        args.format,
        user_col=args.user_col,
        item_col=args.item_col,
        time_col=args.time_col,
    )


def main(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from elcrec.offline import (
        LeaveOneOut,
        OfflineTrainer,
        TrainConfig,
        evaluate_model,
        most_popular,
    )

    cfg = model_config(args.preset, parse_overrides(args.set), args.model == "sasrec")
    data = load_data(args)
    split = LeaveOneOut.from_sequences(data, cfg.block_size)

    if args.model == "most-popular":
        print(json.dumps({**most_popular(split, "test"), "split": "test"}))
        return 0

    tcfg = TrainConfig(
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
    )
    out = Path(args.out)
    if args.resume and not (out / "last.pt").is_file():
        raise ConfigError(
            f"--resume: no checkpoint {out / 'last.pt'} to continue from; "
            "leave out --resume to start afresh"
        )
    if args.resume:
        trainer = OfflineTrainer.resume(out / "last.pt", split, out, epochs=args.epochs)
    else:
        trainer = OfflineTrainer(cfg, tcfg, split, data.items, out)
    trainer.fit(progress=not args.no_progress and sys.stderr.isatty())

    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    trainer.model.load_state_dict(best["model"])
    test = evaluate_model(trainer.model, split.test, tcfg.eval_batch_size)
    print(json.dumps({**test, "split": "test", "best_epoch": trainer.best_epoch}))
    return 0
