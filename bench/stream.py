"""The whole streaming pipeline on a local broker, with streaming baselines.

Starts a local Kafka broker (deploy/kafka_local.py), creates the topics, runs
`elcrec ingest` and `elcrec trainer` as separate processes, replays a data set
to `elcrec.events` (event times stamped at send time, so latencies are real),
waits until the trainer has learned every event, stops everything and prints
one JSON line per data set:

- events per second trained (events / seconds from the first send to the
  last event learned) and the replay rate asked for;
- p50 / p99 from an event's time to the end of the optimizer step that used it;
- live HR@20 and NDCG@20 over the whole stream (test-then-train, seen items
  excluded), next to all-time most-popular, recent most-popular and item-to-item
  transitions measured the same way over the same events;
- versions published, the peak resident memory of each process, and the
  trainer's largest resident memory in each quarter of the run.

    python bench/stream.py --data ../shared/data/ml-100k.inter --rate 300
    python bench/stream.py --data ../shared/data/grocery_train.tsv --rate 300
    python bench/stream.py --data ../shared/data/Beauty.txt --rate 300
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
ELCREC = [sys.executable, "-m", "elcrec.cli"]


def load_kafka_local():
    spec = importlib.util.spec_from_file_location(
        "kafka_local", ROOT / "deploy" / "kafka_local.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def scrape(port: int, name: str) -> float:
    """Sum of a Prometheus metric's samples on 127.0.0.1:port (0 if absent)."""
    try:
        text = urllib.request.urlopen(
            f"http://127.0.0.1:{port}/metrics", timeout=5
        ).read()
    except OSError:
        return 0.0
    total = 0.0
    for line in text.decode().splitlines():
        if line.startswith(name + " ") or line.startswith(name + "{"):
            total += float(line.rsplit(" ", 1)[1])
    return total


def rss_mb(pid: int, field: str = "VmHWM") -> float | None:
    """A process's peak (VmHWM) or current (VmRSS) resident memory, in MB."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    match = re.search(field + r":\s+(\d+) kB", status)
    return round(int(match.group(1)) / 1024, 1) if match else None


def by_quarter(samples: list[tuple[float, float]]) -> list[float]:
    """The largest sample of each quarter of the run (does memory grow?)."""
    if not samples:
        return []
    end = samples[-1][0] or 1.0
    return [
        max((v for t, v in samples if q / 4 <= t / end <= (q + 1) / 4), default=0.0)
        for q in range(4)
    ]


def baselines(path: str, limit: int | None) -> dict:
    from elcrec.data import read_interactions
    from elcrec.stream_baselines import MostPopular, RecentPopular, Transitions

    events = read_interactions(path)
    events = events[:limit] if limit else events
    models = {
        "most_popular": MostPopular(),
        "recent_popular": RecentPopular(),
        "transitions": Transitions(),
    }
    ranks = {name: [] for name in models}
    seen: dict[str, list[str]] = {}
    for e in events:
        history = seen.setdefault(e.user, [])
        for name, m in models.items():
            ranks[name].append(m.rank_one(history, e.item))
            m.learn_one(history, e.item)
        history.append(e.item)
    out = {}
    for name, rs in ranks.items():
        n = len(rs)
        out[name] = {
            "hr@20": round(sum(r < 20 for r in rs) / n, 4),
            "ndcg@20": round(sum(1 / math.log2(r + 2) for r in rs if r < 20) / n, 4),
        }
    return out


def _scaled(value, summary: dict, n_events: int):
    if value is None or not summary.get("predicted"):
        return None
    return round(value * summary["predicted"] / n_events, 4)


def run_one(args, kafka_local) -> dict:
    from elcrec.data import read_interactions
    from elcrec.stream.topics import default_topics, ensure_topics

    n_events = len(read_interactions(args.data))
    if args.limit:
        n_events = min(n_events, args.limit)
    work = Path(tempfile.mkdtemp(prefix="elcrec-stream-bench-"))
    broker = kafka_local.LocalKafka(work / "kafka")
    bootstrap = broker.start()
    procs: dict[str, subprocess.Popen] = {}
    try:
        ensure_topics(bootstrap, default_topics(partitions=args.partitions))
        env = dict(
            os.environ,
            KAFKA_BOOTSTRAP_SERVERS=bootstrap,
            ELCREC_TRAINER_METRICS_WINDOW=str(n_events + 1),
            PYTHONUNBUFFERED="1",
        )
        for item in args.set:
            key, _, value = item.partition("=")
            env[f"ELCREC_TRAINER_{key.upper()}"] = value
        logs = {name: open(work / f"{name}.log", "w") for name in ("ingest", "trainer")}
        procs["ingest"] = subprocess.Popen(
            [
                *ELCREC,
                "ingest",
                "--kafka",
                bootstrap,
                "--state",
                str(work / "state"),
                "--group",
                "bench-ingest",
            ],
            env=env,
            stdout=logs["ingest"],
            stderr=subprocess.STDOUT,
        )
        procs["trainer"] = subprocess.Popen(
            [
                *ELCREC,
                "trainer",
                "--kafka",
                bootstrap,
                "--work-dir",
                str(work / "trainer"),
                "--metrics-port",
                str(args.metrics_port),
            ],
            env=env,
            stdout=logs["trainer"],
            stderr=subprocess.STDOUT,
        )
        time.sleep(5)  # let both join their groups

        t0 = time.monotonic()
        replay = [*ELCREC, "replay", "--kafka", bootstrap, "--data", args.data, "--now"]
        if args.rate:
            replay += ["--rate", str(args.rate)]
        if args.limit:
            replay += ["--limit", str(args.limit)]
        procs["replay"] = subprocess.Popen(replay, env=env, stdout=subprocess.DEVNULL)

        deadline = time.monotonic() + args.timeout
        learned = 0.0
        trainer_rss: list[tuple[float, float]] = []  # (seconds, MB)
        while time.monotonic() < deadline:
            now_rss = rss_mb(procs["trainer"].pid, "VmRSS")
            if now_rss is not None:
                trainer_rss.append((time.monotonic() - t0, now_rss))
            for name, proc in procs.items():
                if proc.poll() not in (None, 0) or (
                    name != "replay" and proc.poll() == 0
                ):
                    raise RuntimeError(
                        f"{name} exited with {proc.returncode}; see {work}"
                    )
            learned = scrape(args.metrics_port, "elcrec_trainer_events_learned_total")
            if learned >= n_events:
                break
            time.sleep(1.0)
        seconds = time.monotonic() - t0
        memory = {name: rss_mb(p.pid) for name, p in procs.items() if p.poll() is None}
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in procs.values():
            try:
                proc.wait(120)
            except subprocess.TimeoutExpired:
                proc.kill()
        broker.cleanup()

    summary = {}
    for line in (work / "trainer.log").read_text().splitlines():
        if "Trainer stopped summary=" in line:
            summary = json.loads(line.split("summary=", 1)[1])
    return {
        "data": Path(args.data).name,
        "events": n_events,
        "events_learned": int(learned),
        "rate_asked": args.rate,
        "events_per_s_trained": round(learned / seconds, 1),
        "seconds": round(seconds, 1),
        "event_to_step_ms_p50": summary.get("event_to_step_ms_p50"),
        "event_to_step_ms_p99": summary.get("event_to_step_ms_p99"),
        "model": {
            "hr@20": summary.get("live_hr@20"),
            "ndcg@20": summary.get("live_ndcg@20"),
            # Events the trainer never saw (a user's burst beyond what one
            # sequence update carries) count as misses here.
            "predicted": summary.get("predicted"),
            "hr@20_all": _scaled(summary.get("live_hr@20"), summary, n_events),
            "ndcg@20_all": _scaled(summary.get("live_ndcg@20"), summary, n_events),
        },
        **baselines(args.data, args.limit),
        "trainer_settings": args.set,
        "steps": summary.get("steps"),
        "versions_published": summary.get("versions_published"),
        "drift_alarms": summary.get("drift_alarms"),
        "peak_rss_mb": memory,
        # Sampled every second: the trainer's largest resident memory in each
        # quarter of the run.
        "trainer_rss_mb_by_quarter": by_quarter(trainer_rss),
        "logs": str(work),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", action="append", help="data file (repeatable)")
    p.add_argument("--rate", type=float, default=300.0, help="replay events/s")
    p.add_argument("--limit", type=int, help="replay only the first N events")
    p.add_argument("--partitions", type=int, default=3)
    p.add_argument("--metrics-port", type=int, default=9477)
    p.add_argument("--timeout", type=float, default=7200.0)
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="FIELD=VALUE",
        help="trainer setting, e.g. --set steps_per_batch=2 (repeatable)",
    )
    args = p.parse_args(argv)
    datas = args.data or [str(ROOT.parent / "shared/data/ml-100k.inter")]
    kafka_local = load_kafka_local()
    for data in datas:
        args.data = data
        print(json.dumps(run_one(args, kafka_local)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
