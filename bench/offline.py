"""Offline benchmark: train on Beauty with the paper's settings, report test metrics.

Prints one line per epoch (losses, validation metrics, seconds) and, at the
end, one JSON line with the test metrics of the best-validation checkpoint,
seconds per epoch (training and evaluation apart), epochs to the best
validation, total wall time and peak memory. Figures are kept in
bench/README.md.

    .venv/bin/python bench/offline.py                   # ELCRec, Beauty preset
    .venv/bin/python bench/offline.py --model sasrec    # plain SASRec baseline
    .venv/bin/python bench/offline.py --model most-popular

Checkpoints go to runs/<name>/ (ignored by git); ``--resume`` continues a run
from its last.pt.
"""

from __future__ import annotations

import argparse
import json
import logging
import platform
import resource
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from elcrec.commands.train import parse_overrides  # noqa: E402
from elcrec.data import load_sequences  # noqa: E402
from elcrec.model import ELCRecConfig  # noqa: E402
from elcrec.offline import (  # noqa: E402
    LeaveOneOut,
    OfflineTrainer,
    TrainConfig,
    evaluate_model,
    most_popular,
)

DEFAULT_DATA = ROOT / ".." / "shared" / "data" / "Beauty.txt"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--data", default=str(DEFAULT_DATA))
    p.add_argument("--preset", default="beauty")
    p.add_argument(
        "--model", default="elcrec", choices=["elcrec", "sasrec", "most-popular"]
    )
    p.add_argument("--pooling", choices=["all", "real"], default=None)
    p.add_argument("--epochs", type=int, default=300)
    p.add_argument("--patience", type=int, default=40)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--threads", type=int, default=0, help="torch threads (0: default)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="override a model config field (repeatable)",
    )
    p.add_argument(
        "--name", default=None, help="run name (default: model-pooling-seed)"
    )
    p.add_argument("--resume", action="store_true", help="continue runs/<name>/last.pt")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    if args.threads:
        torch.set_num_threads(args.threads)

    t_start = time.perf_counter()
    data = load_sequences(args.data)
    cfg = ELCRecConfig.preset(args.preset)
    overrides = parse_overrides(args.set)
    if args.pooling:
        overrides["pooling"] = args.pooling
    cfg = ELCRecConfig.from_dict({**cfg.to_dict(), **overrides})
    split = LeaveOneOut.from_sequences(data, cfg.block_size)
    header = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {platform.processor() or ''}".strip(),
        "torch_threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "args": vars(args),
    }
    print(json.dumps({"run": header}), flush=True)

    if args.model == "most-popular":
        result = {
            "model": "most-popular",
            "valid": most_popular(split, "valid"),
            "test": most_popular(split, "test"),
        }
        print(json.dumps(result), flush=True)
        return 0

    if args.model == "sasrec":
        cfg = cfg.sasrec()
    tag = "".join(f"-{item}" for item in args.set)
    name = args.name or f"{args.model}-{cfg.pooling}{tag}-seed{args.seed}"
    out = ROOT / "runs" / name
    tcfg = TrainConfig(epochs=args.epochs, patience=args.patience, seed=args.seed)
    if args.resume and (out / "last.pt").is_file():
        trainer = OfflineTrainer.resume(out / "last.pt", split, out)
    else:
        trainer = OfflineTrainer(cfg, tcfg, split, data.items, out)

    def report(h: dict) -> None:
        line = {
            "epoch": h["epoch"],
            "loss": round(h["losses"]["total"], 4),
            "rec": round(h["losses"]["rec"], 4),
            "clu": round(h["losses"]["clu"], 4),
            "valid_hr@20": round(h["valid"]["hr@20"], 4),
            "valid_ndcg@20": round(h["valid"]["ndcg@20"], 4),
            "train_s": round(h["train_s"], 1),
            "eval_s": round(h["eval_s"], 1),
            "train_cpu_s": round(h.get("train_cpu_s", 0.0), 1),
            "eval_cpu_s": round(h.get("eval_cpu_s", 0.0), 1),
            "best_epoch": trainer.best_epoch,
        }
        print(json.dumps(line), flush=True)

    trainer.fit(on_epoch=report)

    # test metrics of the best-validation checkpoint
    best = torch.load(out / "best.pt", map_location="cpu", weights_only=True)
    trainer.model.load_state_dict(best["model"])
    test = evaluate_model(trainer.model, split.test)
    hist = trainer.history
    result = {
        "model": args.model,
        "pooling": cfg.pooling,
        "test": test,
        "best_epoch": trainer.best_epoch,
        "best_valid": next(
            h["valid"] for h in hist if h["epoch"] == trainer.best_epoch
        ),
        "epochs": trainer.epoch,
        "train_s_per_epoch": sum(h["train_s"] for h in hist) / len(hist),
        "eval_s_per_epoch": sum(h["eval_s"] for h in hist) / len(hist),
        "train_cpu_s_per_epoch": sum(h.get("train_cpu_s", 0) for h in hist) / len(hist),
        "eval_cpu_s_per_epoch": sum(h.get("eval_cpu_s", 0) for h in hist) / len(hist),
        "wall_s": time.perf_counter() - t_start,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    print(json.dumps(result), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
