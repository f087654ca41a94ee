"""The trainer process against a real broker, and its loop without one."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from conftest import wait_until
from kafka import KafkaConsumer, KafkaProducer

from elcrec.consumers.trainer import Incoming, TrainerLoop, load_trainer_settings
from elcrec.data import read_interactions
from elcrec.publish import latest_version, list_versions, read_model
from elcrec.recommender import Recommender
from elcrec.stream.events import SequenceUpdate as SequenceRecord

# A small model so that the tests run in seconds on two cores.
SMALL = {
    "ELCREC_TRAINER_N_INTENTS": "8",
    "ELCREC_TRAINER_BLOCK_SIZE": "20",
    "ELCREC_TRAINER_FRESH_PER_STEP": "128",
    "ELCREC_TRAINER_REPLAY_PER_STEP": "32",
    "ELCREC_TRAINER_METRICS_WINDOW": "1000",
}


def sequence_records(events, max_len: int = 50, start: int = 0):
    """What the ingest consumer publishes: each user's sequence after each event."""
    seqs: dict[str, list] = {}
    out = []
    for n, e in enumerate(events, start=start):
        items, ts = seqs.setdefault(e.user, ([], []))
        items.append(e.item)
        ts.append(int(e.ts * 1000))
        out.append(
            SequenceRecord(
                user_id=e.user,
                version=len(items),
                items=items[-max_len:],
                ts=ts[-max_len:],
                source_topic="elcrec.events",
                source_partition=0,
                source_offset=n,
                updated_at=int(time.time() * 1000),
            )
        )
    return out


def produce(bootstrap, topic, records) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, linger_ms=20)
    for r in records:
        producer.send(topic, key=r.user_id.encode(), value=r.model_dump_json().encode())
    producer.flush()
    producer.close()


_started: list[subprocess.Popen] = []


@pytest.fixture(autouse=True)
def _no_trainer_left_behind():
    yield
    while _started:
        proc = _started.pop()
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def start_trainer(bootstrap, topic, models_topic, work_dir, group, **env_extra):
    env = dict(os.environ, **SMALL, **env_extra)
    env.update(
        ELCREC_TRAINER_MODELS_TOPIC=models_topic,
        ELCREC_TRAINER_PUBLISH_EVERY_S="2",
        ELCREC_TRAINER_PUBLISH_EVERY_STEPS="10",
        ELCREC_TRAINER_CHECKPOINT_EVERY_STEPS="3",
        ELCREC_TRAINER_SESSION_TIMEOUT_MS="6000",
        ELCREC_TRAINER_HEARTBEAT_INTERVAL_MS="1000",
    )
    cmd = [
        sys.executable,
        "-m",
        "elcrec.cli",
        "trainer",
        "--kafka",
        bootstrap,
        "--topic",
        topic,
        "--work-dir",
        str(work_dir),
        "--group",
        group,
    ]
    log = open(Path(work_dir).parent / f"trainer-{time.monotonic_ns()}.log", "w")
    proc = subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT)
    _started.append(proc)
    return proc


def alive(proc) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"the trainer exited with code {proc.returncode}")
    return True


def learned_offsets(models_dir: Path) -> int:
    name = latest_version(models_dir)
    if name is None:
        return 0
    manifest = json.loads((models_dir / name / "manifest.json").read_text())
    return sum(manifest["source_offsets"].values())


@pytest.fixture
def ml100k_records(shared_data):
    events = read_interactions(shared_data / "ml-100k.inter")[:4000]
    return sequence_records(events)


def run_to_end(bootstrap, topic, models_topic, work, group, total) -> None:
    proc = start_trainer(bootstrap, topic, models_topic, work, group)
    try:
        wait_until(
            lambda: alive(proc) and learned_offsets(work / "models") == total,
            240,
            0.5,
            "the trainer to learn every record",
        )
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(60) == 0


@pytest.mark.kafka
def test_trainer_killed_mid_stream_resumes_and_learns_every_record_once(
    bootstrap, make_topic, make_group, tmp_path, ml100k_records
):
    topic, models_topic = make_topic(partitions=3), make_topic()
    total = len(ml100k_records)
    thirds = [ml100k_records[i * total // 3 : (i + 1) * total // 3] for i in range(3)]

    # Killed with SIGKILL while learning the first and second thirds of the
    # stream (each produced while it was down), then run to the end.
    work = tmp_path / "killed" / "trainer"
    work.parent.mkdir()
    group = make_group()
    produced = 0
    versions_before: list[str] = []
    for part in thirds[:2]:
        produce(bootstrap, topic, part)
        produced += len(part)
        proc = start_trainer(bootstrap, topic, models_topic, work, group)
        n_before = len(versions_before)
        wait_until(
            lambda p=proc, n=n_before: (
                alive(p) and len(list_versions(work / "models")) > n
            ),
            120,
            0.1,
            "a new model version",
        )
        proc.kill()
        proc.wait()
        versions = list_versions(work / "models")
        if versions_before:  # versions keep increasing across restarts
            assert int(versions[-1][1:]) > int(versions_before[-1][1:])
        for v in versions:  # never a partial version: each one verifies
            read_model(work / "models" / v)
        versions_before = versions
    produce(bootstrap, topic, thirds[2])
    run_to_end(bootstrap, topic, models_topic, work, group, total)

    versions = list_versions(work / "models")
    assert int(versions[-1][1:]) > int(versions_before[-1][1:])
    manifest, *_ = read_model(work / "models" / versions[-1])
    # Every record was learned exactly once, as in an uninterrupted run.
    ref = tmp_path / "ref" / "trainer"
    ref.parent.mkdir()
    run_to_end(bootstrap, topic, models_topic, ref, make_group(), total)
    ref_manifest, *_ = read_model(ref / "models" / latest_version(ref / "models"))
    assert manifest.records_learned == ref_manifest.records_learned == total
    assert manifest.events_seen == ref_manifest.events_seen == total

    # Each publication was announced on the models topic, with its path.
    consumer = KafkaConsumer(
        models_topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )
    announced = [json.loads(r.value) for r in consumer]
    consumer.close()
    paths = {a["path"] for a in announced}
    assert str((work / "models" / versions[-1]).resolve()) in paths


def test_new_items_late_in_the_stream_get_rows_and_can_be_recommended(tmp_path):
    settings = load_trainer_settings(
        work_dir=tmp_path,
        n_intents=4,
        block_size=10,
        fresh_per_step=16,
        replay_per_step=8,
        publish_every_steps=1000,
    )
    loop = TrainerLoop(settings)
    # Users cycle a -> b -> c; late, a new item z always follows c.
    early = [
        Incoming(0, n, rec)
        for n, rec in enumerate(
            sequence_records([_ev(f"u{u}", i) for u in range(20) for i in "abcabc"])
        )
    ]
    for chunk in range(0, len(early), 16):
        loop.handle(early[chunk : chunk + 16])
    late = sequence_records(
        [_ev(f"v{u}", i) for u in range(120) for i in "abcz"], start=len(early)
    )
    for chunk in range(0, len(late), 16):
        loop.handle(Incoming(0, r.source_offset, r) for r in late[chunk : chunk + 16])
    manifest = loop.publish()
    assert manifest is not None and "z" in loop.trainer.vocab.ids

    rec = Recommender.latest(settings.models_dir)
    top = [item for item, _ in rec.recommend(["a", "b", "c"], k=1)]
    assert top == ["z"]
    assert len(rec.recommend(["a"], k=10)) == 3  # four items, one seen


def _ev(user, item):
    from elcrec.data import Interaction

    _ev.t = getattr(_ev, "t", 0) + 1
    return Interaction(user, item, float(_ev.t))


def test_a_non_finite_model_is_never_published(tmp_path):
    settings = load_trainer_settings(work_dir=tmp_path, n_intents=4, block_size=10)
    loop = TrainerLoop(settings)
    records = sequence_records([_ev("u", i) for i in "abcd"])
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[:2])])
    assert loop.publish() is not None
    with torch.no_grad():
        loop.trainer.model.tok_emb.weight[1, 0] = float("nan")
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[2:], start=2)])
    assert loop.trainer.skipped_steps == settings.steps_per_batch  # each skipped
    assert loop.publish() is None
    loop.close()
    assert list_versions(settings.models_dir) == ["v000001"]


def test_a_tampered_published_model_is_rejected_by_the_loader(tmp_path):
    settings = load_trainer_settings(work_dir=tmp_path, n_intents=4, block_size=10)
    loop = TrainerLoop(settings)
    records = sequence_records([_ev("u", i) for i in "abcd"])
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records)])
    manifest = loop.publish()
    weights = settings.models_dir / manifest.version / "weights.pt"
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    from elcrec.publish import PublishError

    with pytest.raises(PublishError, match="checksum mismatch"):
        Recommender.latest(settings.models_dir)


def test_a_broken_newer_version_is_read_once_and_the_current_one_serves(
    tmp_path, monkeypatch
):
    settings = load_trainer_settings(
        work_dir=tmp_path, n_intents=4, block_size=10, item_bias=True
    )
    loop = TrainerLoop(settings)
    records = sequence_records([_ev("u", i) for i in "abcdef"])
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[:3])])
    first = loop.publish()
    rec = Recommender.latest(settings.models_dir, reload_interval_s=0)
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[3:], start=3)])
    second = loop.publish()
    weights = settings.models_dir / second.version / "weights.pt"
    weights.write_bytes(weights.read_bytes()[:-10])  # truncated

    from elcrec import recommender

    reads = []
    real = recommender._Loaded
    monkeypatch.setattr(
        recommender, "_Loaded", lambda *a: reads.append(a[0]) or real(*a)
    )
    for _ in range(3):
        assert rec.recommend(["a"], k=2)
    assert rec.version == first.version
    assert reads == [settings.models_dir / second.version]  # tried once
    with pytest.raises(TypeError, match="list of item ids"):
        rec.recommend("a")


def test_recommender_takes_numeric_ids_and_refuses_bad_arguments(tmp_path):
    settings = load_trainer_settings(work_dir=tmp_path, n_intents=4, block_size=10)
    loop = TrainerLoop(settings)
    records = sequence_records([_ev("u", i) for i in ["1", "2", "3", "4"]])
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records)])
    loop.publish()
    rec = Recommender.latest(settings.models_dir)
    assert rec.recommend([1, 2], k=5) == rec.recommend(["1", "2"], k=5)
    assert {i for i, _ in rec.recommend([1, 2], k=5)} == {"3", "4"}
    with pytest.raises(ValueError, match="k must be"):
        rec.recommend(["1"], k=-1)
    with pytest.raises(ValueError, match="at least one item"):
        rec.intent(["unknown"])


def test_bad_device_and_preset_name_their_variables(monkeypatch):
    from elcrec.exceptions import ConfigError

    monkeypatch.setenv("ELCREC_TRAINER_DEVICE", "banana")
    with pytest.raises(ConfigError, match="ELCREC_TRAINER_DEVICE"):
        load_trainer_settings()
    monkeypatch.setenv("ELCREC_TRAINER_DEVICE", "cuda:7")
    with pytest.raises(ConfigError, match="CUDA device"):
        load_trainer_settings()
    monkeypatch.delenv("ELCREC_TRAINER_DEVICE")
    monkeypatch.setenv("ELCREC_TRAINER_PRESET", "nope")
    with pytest.raises(ConfigError, match="ELCREC_TRAINER_PRESET"):
        load_trainer_settings()


def test_a_background_publication_holds_the_model_of_its_moment(tmp_path):
    settings = load_trainer_settings(
        work_dir=tmp_path, n_intents=4, block_size=10, publish_every_steps=10_000
    )
    loop = TrainerLoop(settings)
    records = sequence_records([_ev(f"u{n % 5}", f"i{n % 13}") for n in range(60)])
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[:30])])
    assert loop.maybe_publish(force=True)
    at_publish = {k: v.clone() for k, v in loop.trainer.model.state_dict().items()}
    step, offsets = loop.trainer.step, dict(loop.offsets)
    # Learning goes on while the version is written.
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[30:], start=30)])
    assert loop.trainer.step > step
    loop.wait_writes()
    assert loop.versions_published == 1 and loop.last_version == "v000001"

    manifest, weights, _, _ = read_model(settings.models_dir / "v000001")
    assert manifest.steps == step
    assert manifest.source_offsets == {str(p): o for p, o in offsets.items()}
    for name, value in at_publish.items():
        assert torch.equal(weights[name], value), name
    now = loop.trainer.model.state_dict()["tok_emb.weight"]
    assert not torch.equal(now, at_publish["tok_emb.weight"])
    # The checkpoint written with it is of the same moment.
    blob = torch.load(settings.checkpoint_path, weights_only=True)
    assert blob["trainer"]["step"] == step
    assert blob["extra"]["offsets"] == {"0": 30}
    assert blob["extra"]["versions_published"] == 1


def test_a_failed_background_write_stops_the_trainer(tmp_path):
    settings = load_trainer_settings(work_dir=tmp_path, n_intents=4, block_size=10)
    loop = TrainerLoop(settings)
    records = sequence_records([_ev("u", i) for i in "abcdef"])
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[:3])])
    settings.models_dir.write_text("not a folder")  # publishing must fail
    assert loop.maybe_publish(force=True)
    with pytest.raises(OSError):
        loop.wait_writes()
    assert loop.versions_published == 0
    # The checkpoint went first and is whole.
    assert torch.load(settings.checkpoint_path, weights_only=True)["trainer"]["step"]


def test_deferred_steps_follow_at_leisure_and_the_oldest_are_shed(tmp_path):
    settings = load_trainer_settings(
        work_dir=tmp_path,
        n_intents=4,
        block_size=10,
        replay_per_step=4,
        steps_per_batch=4,
        max_deferred_batches=2,
    )
    loop = TrainerLoop(settings)
    records = sequence_records([_ev(f"u{n % 7}", f"i{n % 11}") for n in range(70)])
    # One pass (one step) at once; the three others wait for idle time.
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[:10])], defer=True)
    assert loop.last_report.steps == 1 and loop.trainer.deferred_steps == 3
    taken = 0
    while loop.learn_deferred():
        taken += 1
    assert taken == 3 and loop.trainer.step == 4
    # Batches arriving faster than idle time: the newest two keep theirs.
    for b in range(1, 6):
        chunk = range(10 * b, 10 * b + 10)
        loop.handle([Incoming(0, n, records[n]) for n in chunk], defer=True)
    assert loop.trainer.step == 4 + 5
    assert loop.trainer.deferred_steps == 2 * 3
    assert loop.trainer.deferred_dropped == 3 * 3
    # Without deferral every step is taken at once.
    loop.handle([Incoming(0, n, records[n]) for n in range(60, 70)])
    assert loop.last_report.steps == 4


def test_a_resumed_trainer_follows_its_new_learning_settings(tmp_path):
    common = dict(work_dir=tmp_path, n_intents=4, block_size=10, replay_per_step=0)
    records = sequence_records([_ev(f"u{n % 3}", f"i{n % 9}") for n in range(40)])
    loop = TrainerLoop(load_trainer_settings(**common, steps_per_batch=2, lr=0.01))
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[:20])])
    assert loop.last_report.steps == 2
    loop.close()

    loop = TrainerLoop(
        load_trainer_settings(**common, steps_per_batch=3, lr=0.002, metrics_window=7)
    )
    assert loop.trainer.config.steps_per_batch == 3
    assert loop.trainer.optimizer.param_groups[0]["lr"] == 0.002
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records[20:], start=20)])
    assert loop.last_report.steps == 3
    assert len(loop.trainer.metrics.state()["ranks"]) == 7


def test_the_popularity_prior_counts_the_stream_and_is_published(tmp_path):
    settings = load_trainer_settings(
        work_dir=tmp_path, n_intents=4, block_size=10, pop_prior=True
    )
    loop = TrainerLoop(settings)
    # Late in the stream every other event is of item "hot".
    items = [f"i{n % 20}" for n in range(200)] + [
        "hot" if n % 2 else f"i{n % 20}" for n in range(200)
    ]
    records = sequence_records([_ev(f"u{n % 25}", i) for n, i in enumerate(items)])
    for start in range(0, len(records), 50):
        chunk = range(start, start + 50)
        loop.handle([Incoming(0, n, records[n]) for n in chunk])
    manifest = loop.publish()
    _, weights, vocab, config = read_model(settings.models_dir / manifest.version)
    assert config["pop_prior"] is True
    counts = weights["pop_counts"]
    hot = vocab.index("hot") + 1
    assert counts[hot] == counts.max() and counts[hot] > 50
    assert Recommender.latest(settings.models_dir).recommend(["i1"], k=1)[0][0] == "hot"


def test_the_transition_prior_counts_the_stream_and_is_published(tmp_path):
    settings = load_trainer_settings(
        work_dir=tmp_path, n_intents=4, block_size=10, trans_prior=True
    )
    loop = TrainerLoop(settings)
    # Every user who takes "a" takes "b" next; other items come at random.
    rng = random.Random(0)
    events = []
    for n in range(300):
        user = f"u{n % 30}"
        if n % 3 == 0:
            events += [_ev(user, "a"), _ev(user, "b")]
        else:
            events.append(_ev(user, f"i{rng.randrange(40)}"))
    records = sequence_records(events)
    for start in range(0, len(records), 50):
        chunk = range(start, min(start + 50, len(records)))
        loop.handle([Incoming(0, n, records[n]) for n in chunk])
    manifest = loop.publish()
    _, weights, vocab, config = read_model(settings.models_dir / manifest.version)
    assert config["trans_prior"] is True
    a, b = vocab.index("a") + 1, vocab.index("b") + 1
    slots = weights["trans_next"][a].tolist()
    assert weights["trans_counts"][a][slots.index(b)] == 100.0
    # a fresh user after "a": "b" first
    assert (
        Recommender.latest(settings.models_dir).recommend(["i1", "a"], k=1)[0][0] == "b"
    )


def test_a_warm_start_keeps_the_weights_and_the_configured_count_priors(tmp_path):
    events = [_ev(f"u{n % 7}", f"i{(n * 5) % 23}") for n in range(120)]
    records = sequence_records(events)
    first = load_trainer_settings(
        work_dir=tmp_path / "a", n_intents=4, block_size=10, pop_prior=True
    )
    loop = TrainerLoop(first)
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records)])
    manifest = loop.publish()
    published = first.models_dir / manifest.version
    _, weights, vocab, _ = read_model(published)

    # Started from it with the transition prior and without the popularity one.
    second = load_trainer_settings(
        work_dir=tmp_path / "b",
        n_intents=4,
        block_size=10,
        trans_prior=True,
        rec_loss="ce",
        ce_max_rows=256,
        warm_start=published,
    )
    warm = TrainerLoop(second)
    model = warm.trainer.model
    assert model.config.trans_prior and not model.config.pop_prior
    # loss settings are this trainer's too
    assert model.config.rec_loss == "ce" and model.config.ce_max_rows == 256
    assert not hasattr(model, "pop_counts")
    assert torch.equal(model.tok_emb.weight, weights["tok_emb.weight"])
    assert torch.equal(model.centers, weights["centers"])
    assert model.trans_counts.sum() == 0
    assert warm.trainer.vocab.ids == vocab
    warm.handle([Incoming(0, n, r) for n, r in enumerate(records)])
    assert model.trans_counts.sum() > 0


def test_a_resumed_trainer_takes_new_loss_settings_and_keeps_its_shape(tmp_path):
    records = sequence_records([_ev(f"u{n % 5}", f"i{n % 11}") for n in range(60)])
    first = load_trainer_settings(
        work_dir=tmp_path, n_intents=4, block_size=10, rec_loss="ce"
    )
    loop = TrainerLoop(first)
    loop.handle([Incoming(0, n, r) for n, r in enumerate(records)])
    loop.checkpoint()
    again = TrainerLoop(
        load_trainer_settings(
            work_dir=tmp_path, n_intents=8, block_size=10, ce_max_rows=64
        )
    )
    config = again.trainer.model.config
    assert config.ce_max_rows == 64 and config.rec_loss == "ce"
    assert config.n_intents == 4  # the shape is the checkpoint's
