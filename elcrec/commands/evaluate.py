"""``elcrec evaluate``: full-ranking HR@k and NDCG@k of a trained model.

Loads ``best.pt`` from ``--model`` (a folder written by ``elcrec train``, or a
checkpoint file), re-indexes the data set onto the model's item vocabulary and
prints one JSON line with ``hr@5 ndcg@5 hr@10 ndcg@10 hr@20 ndcg@20`` and
``split``.
"""

from __future__ import annotations

import argparse
import json

from elcrec.commands.train import add_data_arguments, load_data


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", required=True, help="folder with best.pt, or a checkpoint file"
    )
    add_data_arguments(parser)
    parser.add_argument("--split", default="test", choices=["test", "valid"])
    parser.add_argument("--device", default="cpu", help="cpu, auto or cuda[:N]")


def main(args: argparse.Namespace) -> int:
    from elcrec.offline import LeaveOneOut, evaluate_model, load_model, remap_items

    model, items = load_model(args.model, args.device)
    data = remap_items(load_data(args), items)
    split = LeaveOneOut.from_sequences(data, model.config.block_size)
    metrics = evaluate_model(model, split.eval_set(args.split))
    print(json.dumps({**metrics, "split": args.split}))
    return 0
