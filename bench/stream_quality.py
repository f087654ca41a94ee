"""Prequential quality of the continual model next to streaming baselines.

In-process (no broker): the events of a data set are cut into batches as the
ingest consumer would poll them, each batch becomes one sequence update per
touched user, and the trainer loop predicts then learns them. The baselines
see the same events one by one, test-then-train, seen items excluded.

    python bench/stream_quality.py --data ../shared/data/ml-100k.inter

Prints one JSON line: HR/NDCG@20 over the whole stream (and over its first
``--valid-frac``, the part used to choose settings) for the model and each
baseline, events per second, and the run's settings.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def metrics(ranks, k=20):
    n = max(1, len(ranks))
    return {
        f"hr@{k}": round(sum(r < k for r in ranks) / n, 4),
        f"ndcg@{k}": round(sum(1 / math.log2(r + 2) for r in ranks if r < k) / n, 4),
    }


def current_rss_mb() -> float:
    """This process's resident memory now (VmRSS), in MB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default=str(ROOT.parent / "shared/data/ml-100k.inter"))
    p.add_argument("--limit", type=int)
    p.add_argument("--batch-events", type=int, default=256)
    p.add_argument("--valid-frac", type=float, default=0.3)
    p.add_argument("--no-baselines", action="store_true")
    p.add_argument(
        "--last",
        type=int,
        default=0,
        metavar="N",
        help="also report every method over the last N events",
    )
    p.add_argument(
        "--rss-every",
        type=int,
        default=0,
        metavar="N",
        help="print the resident memory to stderr every N events",
    )
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="trainer setting, e.g. --set lr=0.003 (repeatable)",
    )
    args = p.parse_args(argv)

    from elcrec.consumers.trainer import Incoming, TrainerLoop, load_trainer_settings
    from elcrec.data import read_interactions
    from elcrec.state.store import StoreOptions
    from elcrec.stream.events import SequenceUpdate as SequenceRecord
    from elcrec.stream_baselines import MostPopular, RecentPopular, Transitions

    events = (
        read_interactions(args.data)[: args.limit]
        if args.limit
        else read_interactions(args.data)
    )
    overrides = {}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    work = Path(tempfile.mkdtemp(prefix="elcrec-bench-"))
    settings = load_trainer_settings(work_dir=work, **overrides)
    loop = TrainerLoop(settings)
    # What one sequence update carries (the ingest consumer's default).
    max_len = StoreOptions().max_sequence_length

    baselines = (
        {}
        if args.no_baselines
        else {
            "most_popular": MostPopular(),
            "recent_popular": RecentPopular(),
            "transitions": Transitions(),
        }
    )
    base_ranks = {name: [] for name in baselines}
    model_ranks: list[int] = []
    seqs: dict[str, list] = {}
    versions: dict[str, int] = {}
    t_learn = 0.0
    t0 = time.time()
    for start in range(0, len(events), args.batch_events):
        batch = events[start : start + args.batch_events]
        touched: dict[str, int] = {}
        for n, e in enumerate(batch, start=start):
            history = seqs.setdefault(e.user, [])
            for name, b in baselines.items():
                base_ranks[name].append(b.rank_one(history, e.item))
                b.learn_one(history, e.item)
            history.append(e.item)
            versions[e.user] = versions.get(e.user, 0) + 1
            touched[e.user] = n
        records = [
            Incoming(
                0,
                n,
                SequenceRecord(
                    user_id=u,
                    version=versions[u],
                    items=seqs[u][-max_len:],
                    ts=[0] * len(seqs[u][-max_len:]),
                    source_topic="bench",
                    source_partition=0,
                    source_offset=n,
                    updated_at=0,
                ),
            )
            for u, n in sorted(touched.items(), key=lambda kv: kv[1])
        ]
        t1 = time.time()
        loop.handle(records)
        t_learn += time.time() - t1
        model_ranks.extend(loop.last_report.ranks)
        if (
            args.rss_every
            and (start // args.batch_events)
            % max(1, args.rss_every // args.batch_events)
            == 0
        ):
            print(
                f"events={start + len(batch)} rss_mb={current_rss_mb():.0f} "
                f"steps={loop.trainer.step}",
                file=sys.stderr,
                flush=True,
            )
    wall = time.time() - t0

    # The model predicts every event still in its window (a burst of more
    # than block_size + 1 events of one user in one batch loses the oldest).
    n_valid = int(args.valid_frac * len(events))
    out = {
        "data": Path(args.data).name,
        "events": len(events),
        "settings": overrides,
        "batch_events": args.batch_events,
        "model": metrics(model_ranks),
        "model_predicted": len(model_ranks),
        "model_valid": metrics(model_ranks[: int(args.valid_frac * len(model_ranks))]),
        "model_events_per_s": round(len(events) / t_learn, 1),
        "steps": loop.trainer.step,
        "wall_s": round(wall, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
    }
    model = loop.trainer.model
    for name in ("pop_weight", "trans_weight"):  # the learned prior weights
        if hasattr(model, name):
            out[name] = round(getattr(model, name).item(), 3)
    if args.last:
        out["model_last"] = metrics(model_ranks[-args.last :])
    for name, ranks in base_ranks.items():
        out[name] = metrics(ranks)
        out[name + "_valid"] = metrics(ranks[:n_valid])
        if args.last:
            out[name + "_last"] = metrics(ranks[-args.last :])
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
