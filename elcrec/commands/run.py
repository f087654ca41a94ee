"""``elcrec run``: the whole job in one command.

Without ``--kafka`` (the embedded default) events from ``--data PATH`` or the
built-in synthetic clickstream pass through the same state store and trainer
code as in production, in one process and with no broker: each batch of events
is applied to the RocksDB store in one write batch, then the users it touched
are learned from. State, models, the checkpoint and the
metrics live under ``--work-dir``; running again on the same folder resumes
where the last run stopped.

With ``--kafka HOST:PORT`` it creates elcrec's topics if missing and runs the
ingest consumer and the trainer as separate processes against that cluster,
supervised and stopped together (Ctrl-C or SIGTERM); ``--replay`` also
produces the input (``--data`` or the synthetic stream) to the events topic.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import signal
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

from elcrec.exceptions import ConfigError

logger = logging.getLogger(__name__)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--kafka", help="run against this Kafka cluster (bootstrap)")
    parser.add_argument("--data", help="input data set (default: synthetic stream)")
    parser.add_argument(
        "--format",
        default="auto",
        help="data format: auto, seq, inter, csv, tsv, jsonl",
    )
    parser.add_argument("--user-col", help="user column of a table file")
    parser.add_argument("--item-col", help="item column of a table file")
    parser.add_argument("--time-col", help="time column of a table file")
    parser.add_argument(
        "--work-dir",
        default="elcrec-work",
        help="state, models, checkpoint (default elcrec-work)",
    )
    parser.add_argument("--limit", type=int, help="use only the first N events")
    parser.add_argument(
        "--batch-events", type=int, default=256, help="events per store write batch"
    )
    parser.add_argument(
        "--metrics-port", type=int, help="serve Prometheus metrics here"
    )
    parser.add_argument(
        "--replay",
        action="store_true",
        help="with --kafka: also produce the input (event times = send times)",
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.add_argument(
        "--synthetic-users",
        type=int,
        default=1000,
        help="users of the synthetic stream",
    )
    parser.add_argument(
        "--synthetic-items", type=int, default=500, help="items of the synthetic stream"
    )
    parser.add_argument(
        "--synthetic-shift",
        type=float,
        default=0.6,
        help="where the synthetic intents shift, as a fraction of the stream",
    )


def main(args: argparse.Namespace) -> int:
    if args.batch_events < 1:
        raise ConfigError(f"--batch-events must be 1 or more, got {args.batch_events}")
    check_work_dir(Path(args.work_dir))
    if args.kafka:
        return run_kafka(args)
    summary = run_embedded(args)
    print(json.dumps(summary))
    return 0


# -- embedded -------------------------------------------------------------------


def input_events(args) -> list[dict]:
    """Events of ``--data`` or the synthetic stream, in wire-schema dicts."""
    from elcrec.stream.replay import ReplayOptions, iter_events, load_interactions

    if args.data:
        try:
            interactions = load_interactions(
                args.data,
                args.format,
                user_col=args.user_col,
                item_col=args.item_col,
                time_col=args.time_col,
            )
        except ValueError as exc:
            raise ConfigError(str(exc)) from None
        prefix = Path(args.data).stem
    else:
        n_events = args.synthetic_users * 30
        shift = int(args.synthetic_shift * n_events) if args.synthetic_shift else None
        interactions = load_interactions(
            "synthetic",
            synthetic=dict(
                n_users=args.synthetic_users,
                n_items=args.synthetic_items,
                events_per_user=30,
                shift_at=shift,
            ),
        )
        prefix = "synthetic"
    try:
        options = ReplayOptions(limit=args.limit, id_prefix=prefix)
    except ValueError as exc:
        raise ConfigError(f"--limit: {exc}") from None
    return list(iter_events(interactions, options))


def check_work_dir(work: Path) -> None:
    """``--work-dir`` must be a folder, or creatable as one (nothing is created)."""
    if work.exists() and not work.is_dir():
        raise ConfigError(f"--work-dir {work} is a file, not a folder")
    parent = work.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise ConfigError(f"--work-dir {work}: {parent} is a file, not a folder")


def check_input(work: Path, args) -> None:
    """A work folder belongs to one input: refuse to resume it on another."""
    identity = {
        "data": str(Path(args.data).resolve()) if args.data else "synthetic",
        "synthetic": None
        if args.data
        else [args.synthetic_users, args.synthetic_items, args.synthetic_shift],
    }
    marker = work / "input.json"
    if marker.exists():
        before = json.loads(marker.read_text())
        if before != identity:
            raise ConfigError(
                f"--work-dir {work} holds the state of another input ({before['data']}); "
                "choose another --work-dir or remove this one"
            )
    else:
        work.mkdir(parents=True, exist_ok=True)
        marker.write_text(json.dumps(identity))


def run_embedded(args) -> dict:
    """Apply the input to the store and learn from it; returns the summary."""
    from pydantic import ValidationError
    from tqdm import tqdm

    from elcrec.consumers.settings import load_ingest_settings
    from elcrec.consumers.trainer import Incoming, TrainerLoop, load_trainer_settings
    from elcrec.publish import latest_version
    from elcrec.state.store import SequenceStore
    from elcrec.stream.events import ClickEvent
    from elcrec.stream.events import SequenceUpdate as SequenceRecord

    work = Path(args.work_dir)
    # A bad file or setting fails before anything is created.
    events = input_events(args)
    if not events:
        logger.warning("No events to learn (an empty input, or --limit 0)")
    settings = load_trainer_settings(
        work_dir=work / "trainer", metrics_port=args.metrics_port
    )
    # The store's settings are the ingest consumer's (ELCREC_*), validated alike.
    store_options = load_ingest_settings(state_dir=work / "state").store_options()
    check_input(work, args)
    loop = TrainerLoop(settings)
    server = None
    if settings.metrics_port is not None:
        server = loop.metrics.serve(settings.metrics_port, settings.metrics_host)
    store = SequenceStore(
        work / "state",
        "embedded",
        # Long enough that a batch's every event reaches the trainer.
        replace(
            store_options,
            max_sequence_length=max(
                store_options.max_sequence_length, args.batch_events + 1
            ),
        ),
    )
    part = store.assign(0)
    start = part.next_offset or 0
    rejected = 0

    def learn(touched, committed_at: int) -> None:
        records = sorted(
            (
                Incoming(
                    0,
                    seq.last_offset,
                    SequenceRecord(
                        user_id=seq.user_id,
                        version=seq.version,
                        items=list(seq.items),
                        ts=list(seq.ts),
                        source_topic="embedded",
                        source_partition=0,
                        source_offset=seq.last_offset,
                        updated_at=committed_at,
                    ),
                )
                for seq in touched
            ),
            key=lambda inc: inc.offset,
        )
        loop.handle(records)

    # Events stored by an earlier run but not in the trainer's checkpoint (a
    # crash between the two) are learned first; user versions tell the
    # trainer how many of each sequence's events are new to it.
    learned_up_to = loop.offsets.get(0, 0)
    leftover = [s for s in part.sequences() if s.last_offset >= learned_up_to]
    if leftover:
        logger.info("Delivering sequences left by the last run users=%d", len(leftover))
        learn(leftover, int(time.time() * 1000))

    logger.info(
        "Embedded run work_dir=%s events=%d resuming_at=%d", work, len(events), start
    )
    bar = tqdm(
        total=len(events),
        initial=min(start, len(events)),
        unit="ev",
        disable=args.no_progress,
        dynamic_ncols=True,
    )
    stop: list[int] = []
    interrupted = False
    previous = signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    try:
        for first in range(start, len(events), args.batch_events):
            if stop:
                break
            batch = events[first : first + args.batch_events]
            with part.begin() as tx:
                for n, raw in enumerate(batch, start=first):
                    try:
                        tx.apply(ClickEvent(**raw), offset=n)
                    except ValidationError:
                        rejected += 1
                        tx.advance(n)
                result = tx.commit()
            learn(list(result.touched.values()), result.committed_at)
            bar.update(len(batch))
            live = loop.trainer.live_metrics()
            bar.set_postfix(
                steps=loop.trainer.step,
                hr20=f"{live['hr@20']:.3f}",
                version=loop.last_version or "-",
                refresh=False,
            )
    except KeyboardInterrupt:
        interrupted = True
        logger.info("Interrupted; publishing and checkpointing before exit")
    finally:
        signal.signal(signal.SIGTERM, previous)
        bar.close()
        loop.close()
        store.close()
        if server is not None:
            server.shutdown()

    summary = loop.summary()
    if events and summary.get("steps") == 0:
        logger.warning(
            "No training step and no model: no user had a second event yet "
            "(a file without times orders events by position in each line, so "
            "its first events are every user's first item); use a larger --limit"
        )
    summary.update(
        last_version=latest_version(settings.models_dir),
        interrupted=bool(stop) or interrupted,
        mode="embedded",
        input=args.data or "synthetic",
        rejected_events=rejected,
        models_dir=str(settings.models_dir),
    )
    return summary


# -- against a Kafka cluster ---------------------------------------------------------


def run_kafka(args) -> int:
    from elcrec.stream.kafka_options import client_options, load_client_settings
    from elcrec.stream.topics import default_topics, ensure_topics

    # TLS and SASL from ELCREC_*, which the child processes read as well
    security = client_options(load_client_settings(args.kafka))
    work = Path(args.work_dir)
    work.mkdir(parents=True, exist_ok=True)
    created = ensure_topics(args.kafka, default_topics(), client_options=security)
    logger.info("Topics ready %s", created)

    exe = [sys.executable, "-m", "elcrec.cli"]
    procs: dict[str, subprocess.Popen] = {}
    env = dict(os.environ, KAFKA_BOOTSTRAP_SERVERS=args.kafka)
    procs["ingest"] = subprocess.Popen(
        [*exe, "ingest", "--kafka", args.kafka, "--state", str(work / "state")], env=env
    )
    trainer_cmd = [
        *exe,
        "trainer",
        "--kafka",
        args.kafka,
        "--work-dir",
        str(work / "trainer"),
    ]
    if args.metrics_port:
        trainer_cmd += ["--metrics-port", str(args.metrics_port)]
    procs["trainer"] = subprocess.Popen(trainer_cmd, env=env)
    if args.replay:
        # Stamped at send time, like a live stream: the trainer's summary
        # then gives the latency from event to step.
        replay_cmd = [*exe, "replay", "--kafka", args.kafka, "--now"]
        replay_cmd += ["--data", args.data or "synthetic", "--format", args.format]
        for flag in ("user_col", "item_col", "time_col"):
            if getattr(args, flag):
                replay_cmd += ["--" + flag.replace("_", "-"), getattr(args, flag)]
        if args.limit:
            replay_cmd += ["--limit", str(args.limit)]
        procs["replay"] = subprocess.Popen(replay_cmd, env=env)

    stopping = []

    def on_signal(signum, _frame):
        logger.info("Stopping all processes on signal=%s", signal.Signals(signum).name)
        stopping.append(signum)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    failed = None
    try:
        while not stopping and failed is None:
            time.sleep(0.5)
            if stopping:  # a signal came during the sleep
                break
            for name, proc in procs.items():
                code = proc.poll()
                if code is None or (name == "replay" and code == 0):
                    continue
                if code == 0:
                    # Ingest and trainer run until stopped: a clean exit is a
                    # stop (Ctrl-C reaches the whole process group at once).
                    logger.info("Process stopped, stopping the others name=%s", name)
                    stopping.append(signal.SIGINT)
                    break
                failed = (name, code)
                logger.error(
                    "Process exited, stopping the others name=%s code=%s", name, code
                )
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 60
        for proc in procs.values():
            try:
                proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    # The trainer writes its summary when it stops.
    summary_path = work / "trainer" / "summary.json"
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary.update(
        mode="kafka",
        kafka=args.kafka,
        interrupted=bool(stopping),
        failed=None if failed is None else f"{failed[0]} exited with {failed[1]}",
        models_dir=str(work / "trainer" / "models"),
    )
    print(json.dumps(summary), flush=True)
    return 1 if failed else 0
