"""The whole pipeline on a real broker: replayed events -> ingest -> trainer -> models."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
import urllib.request
import uuid
from collections import deque

import pytest
from conftest import wait_until
from ingest_helpers import (
    end_offsets_total,
    events_from_interactions,
    ingest_settings,
    produce,
    read_topic,
    running_ingest,
)

from elcrec.consumers.trainer import TrainerApp, load_trainer_settings
from elcrec.data import read_interactions
from elcrec.drift import WindowReport
from elcrec.publish import latest_version, list_versions, read_model
from elcrec.stream.topics import TopicSpec, ensure_topics
from elcrec.stream_baselines import MostPopular
from elcrec.synthetic import SyntheticClickstream

pytestmark = pytest.mark.kafka

WINDOW = 2_000
# ml-100k: this many events wait in the topic when the trainer starts (history
# to catch up on); the last WINDOW arrive live, at LIVE_RATE events/s.
BACKLOG = 10_000
LIVE_RATE = 200


def _topics(bootstrap, base: str) -> dict[str, str]:
    names = {
        "events": base,
        "dlq": f"{base}.dlq",
        "sequences": f"{base}.seq",
        "models": f"{base}.models",
        "drift": f"{base}.drift",
    }
    parts = {"events": 3, "sequences": 3}
    ensure_topics(bootstrap, [TopicSpec(n, parts.get(k, 1)) for k, n in names.items()])
    return names


def _input(name, shared_data):
    if name == "synthetic":
        return SyntheticClickstream(
            n_users=300, n_items=200, n_intents=6, events_per_user=25, seed=7
        ).interactions()
    return read_interactions(shared_data / "ml-100k.inter")[: BACKLOG + WINDOW]


@pytest.mark.parametrize("data", ["synthetic", "ml-100k"])
def test_replay_is_learned_live_published_and_monitored(
    bootstrap, tmp_path, shared_data, data
):
    topics = _topics(bootstrap, f"pipeline-{uuid.uuid4().hex[:8]}")
    interactions = _input(data, shared_data)
    n_events = len(interactions)
    events = events_from_interactions(interactions, id_prefix="ml")
    live = data == "ml-100k"
    backlog = events[:BACKLOG] if live else events
    produce(bootstrap, topics["events"], backlog)

    settings = load_trainer_settings(
        bootstrap_servers=bootstrap,
        group_id=f"trainer-{uuid.uuid4().hex[:8]}",
        sequences_topic=topics["sequences"],
        models_topic=topics["models"],
        drift_topic=topics["drift"],
        work_dir=tmp_path / "trainer",
        metrics_window=WINDOW,
        publish_every_s=5,
        drift_window=100,
        metrics_port=0,
        # A version per step on the short ml-100k slice, fewer on the other.
        publish_every_steps=20,
    )
    trainer = TrainerApp(settings)
    failures: list[BaseException] = []

    def run_trainer():
        try:
            trainer.run()
        except BaseException as exc:
            failures.append(exc)

    thread = threading.Thread(target=run_trainer, name="trainer", daemon=True)
    ingest = ingest_settings(
        bootstrap,
        topics["events"],
        f"ingest-{uuid.uuid4().hex[:8]}",
        tmp_path / "state",
    )
    with running_ingest(ingest):
        thread.start()
        n_sequences = wait_until(
            lambda: end_offsets_total(bootstrap, topics["sequences"]) or None, 120
        )
        if live:
            wait_until(
                lambda: failures or trainer.loop.trainer.events_seen >= BACKLOG,
                600,
                1.0,
                "the trainer to learn the backlog",
            )
            for start in range(BACKLOG, len(events), LIVE_RATE // 10):
                produce(
                    bootstrap, topics["events"], events[start : start + LIVE_RATE // 10]
                )
                time.sleep(0.1)
        wait_until(
            lambda: (
                failures
                or trainer.loop.trainer.events_seen == n_events
                and sum(trainer.learned_offsets.values())
                == end_offsets_total(bootstrap, topics["sequences"])
            ),
            600,
            1.0,
            lambda: (
                f"the trainer to learn every sequence update (learned "
                f"{trainer.learned_offsets}, end offsets "
                f"{end_offsets_total(bootstrap, topics['sequences'])})"
            ),
        )
    # The documented metrics, with help strings, on the trainer's /metrics.
    page = (
        urllib.request.urlopen(
            f"http://127.0.0.1:{trainer.metrics_port}/metrics", timeout=10
        )
        .read()
        .decode()
    )
    for name in (
        "elcrec_trainer_events_learned_total",
        "elcrec_trainer_steps_total",
        "elcrec_live_quality_ratio",
        "elcrec_model_version",
        "elcrec_drift_alarms_total",
        "elcrec_trainer_event_to_step_seconds_bucket",
    ):
        assert f"\n{name}" in page, name
    assert 'elcrec_live_quality_ratio{metric="hr@20"}' in page
    if trainer.loop.drift.n_windows >= 1:  # set when a drift window closes
        assert 'elcrec_intent_share_ratio{intent="0"}' in page
        assert "\nelcrec_intents_empty " in page
    if trainer.loop.drift.n_windows >= 2:  # a divergence needs two windows
        assert 'elcrec_intent_js_divergence{reference="previous"}' in page
    assert "# HELP elcrec_intent_js_divergence Jensen-Shannon" in page
    learned = [
        ln
        for ln in page.splitlines()
        if ln.startswith("elcrec_trainer_events_learned_total ")
    ]
    assert float(learned[0].split()[1]) == n_events

    trainer.stop()
    thread.join(120)
    assert not failures, failures
    assert n_sequences > 0
    summary = trainer.loop.summary()
    assert summary["events"] == n_events

    # Models were published; the newest loads in a fresh process and recommends.
    models = settings.models_dir
    assert len(list_versions(models)) >= (2 if data == "synthetic" else 1)
    assert read_model(models / latest_version(models))[0].events_seen == n_events
    code = (
        "import json; from elcrec import Recommender;"
        f"r = Recommender.latest({str(models)!r});"
        "print(json.dumps(r.recommend(['50', '181', '258'], k=10)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-2000:]
    top = json.loads(out.stdout)
    assert len(top) == 10 and {"50", "181", "258"}.isdisjoint(i for i, _ in top)

    announced = read_topic(bootstrap, topics["models"])
    assert json.loads(announced[-1].value)["version"] == latest_version(models)
    drift = [json.loads(r.value) for r in read_topic(bootstrap, topics["drift"])]
    windows = [WindowReport.model_validate(d) for d in drift if d["kind"] == "window"]
    assert len(windows) == trainer.loop.drift.n_windows
    assert all(sum(w.counts) == 100 for w in windows)
    assert windows or data != "synthetic"
    assert [w.window for w in windows] == list(range(len(windows)))

    # Live quality over the last window, next to most-popular measured the
    # same way (test-then-train, seen items excluded, same last events).
    popular, hits, seen = MostPopular(), deque(maxlen=WINDOW), {}
    for x in interactions:
        history = seen.setdefault(x.user, [])
        hits.append(popular.rank_one(history, x.item) < 20)
        popular.learn_one(history, x.item)
        history.append(x.item)
    popular_hr = sum(hits) / len(hits)
    model_hr = trainer.loop.trainer.live_metrics()["hr@20"]
    print(
        f"{data}: live HR@20 over the last {WINDOW}: model {model_hr:.4f}, "
        f"most-popular {popular_hr:.4f}"
    )
    if data == "synthetic":
        # Planted intents and orders: the model must clearly win.
        assert model_hr > popular_hr + 0.05
    else:
        # The last window arrived live, after the backlog was learned.
        assert model_hr > popular_hr
