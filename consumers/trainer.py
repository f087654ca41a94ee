"""The trainer process: learns from ``elcrec.sequences`` and publishes models.

Two layers:

- :class:`TrainerLoop` has no Kafka: it takes sequence updates with their source
  position, drops what it has already learned (per partition offset, per user
  version), feeds the rest to :class:`~elcrec.online.OnlineTrainer`, and
  checkpoints and publishes on its schedule. The embedded mode of ``elcrec run``
  drives it directly.
- :class:`TrainerApp` adds Kafka: a poll thread reads ``elcrec.sequences`` into a
  bounded queue (pausing the partitions when it is full, so polling never stops
  and a slow step never gets the trainer thrown out of its group), the main
  thread trains, and model publications are announced on ``elcrec.models``.

Guarantee: the checkpoint holds the model, optimizer, vocabulary, replay sample
and the next offset per partition of what it learned, written atomically. On a
restart the trainer seeks to those offsets, so every record is learned exactly
once in the model's history (records learned after the last checkpoint are
learned again, by a model that had not seen them). Offsets committed to Kafka
trail the checkpoint and serve monitoring only.
"""

from __future__ import annotations

import json
import logging
import pickle
import queue
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram
from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from elcrec.exceptions import ElcrecError
from elcrec.heap import HeapTrimmer
from elcrec.signals import install_stop_handlers
from elcrec.stream.events import SequenceUpdate as SequenceRecord
from elcrec.stream.kafka_options import client_options, security_fields
from elcrec.stream.topics import (
    DRIFT_TOPIC,
    MODELS_TOPIC,
    SEQUENCES_TOPIC,
    wait_for_topic,
)

logger = logging.getLogger(__name__)


# Trainer settings that are fields of the model's ELCRecConfig.
MODEL_SETTINGS = (
    "n_layer",
    "n_intents",
    "block_size",
    "clu_weight",
    "rec_loss",
    "seqcl_similarity",
    "item_bias",
    "pop_prior",
    "trans_prior",
    "ce_max_rows",
    "pooling",
    "clu_pull",
)


class TrainerError(ElcrecError):
    """The trainer cannot go on (Kafka unreachable, checkpoint unreadable...)."""


class TrainerSettings(security_fields("ELCREC_TRAINER_"), BaseSettings):
    """Settings of the trainer process (environment prefix ``ELCREC_TRAINER_``).

    The Kafka security fields (:mod:`elcrec.stream.kafka_options`) are read from
    ``ELCREC_TRAINER_*``, else from the ``ELCREC_*`` names ingest reads.
    """

    model_config = SettingsConfigDict(
        env_prefix="ELCREC_TRAINER_", frozen=True, extra="forbid", populate_by_name=True
    )

    # -- Kafka ----------------------------------------------------------------
    bootstrap_servers: str = Field(
        "127.0.0.1:9092",
        validation_alias=AliasChoices(
            "ELCREC_TRAINER_BOOTSTRAP_SERVERS",
            "ELCREC_BOOTSTRAP_SERVERS",
            "KAFKA_BOOTSTRAP_SERVERS",
        ),
        description="Kafka bootstrap address(es), comma separated",
    )
    group_id: str = Field(
        "elcrec-trainer", min_length=1, description="the trainer's consumer group"
    )
    client_id: str = Field("elcrec-trainer", description="Kafka client id")
    sequences_topic: str = Field(
        SEQUENCES_TOPIC, min_length=1, description="sequence updates to learn from"
    )
    models_topic: str = Field(
        MODELS_TOPIC, min_length=1, description="where publications are announced"
    )
    drift_topic: str = Field(
        DRIFT_TOPIC, min_length=1, description="drift windows and alarms"
    )
    session_timeout_ms: int = Field(
        45_000, ge=1000, description="Kafka group session timeout"
    )
    heartbeat_interval_ms: int = Field(
        3_000, ge=100, description="Kafka group heartbeat interval"
    )
    queue_records: int = Field(
        20_000, ge=1, description="records buffered between polling and training"
    )

    # -- files ----------------------------------------------------------------
    work_dir: Path = Field(
        Path("elcrec-work/trainer"),
        description="holds models/ and checkpoint.pt",
    )
    warm_start: Path | None = Field(
        None, description="a published model directory to start from"
    )

    # -- model ----------------------------------------------------------------
    preset: str | None = Field(
        None,
        pattern="^(beauty|sports|toys|yelp)$",
        description="beauty, sports, toys or yelp",
    )
    n_layer: int | None = Field(1, ge=1, le=12, description="transformer layers")
    n_intents: int | None = Field(
        64, ge=1, le=4096, description="learnable intent centers K"
    )
    block_size: int | None = Field(
        50, ge=2, le=1000, description="events the encoder sees before a prediction"
    )
    dropout: float | None = Field(
        0.1, ge=0, lt=1, description="dropout of embeddings and attention"
    )
    clu_weight: float | None = Field(
        0.1, ge=0, description="weight lambda of the intent (cluster) losses"
    )
    seqcl_similarity: str | None = Field(
        "cosine",
        pattern="^(dot|cosine)$",
        description="sequence-level contrast on raw dot products (the paper) or cosine",
    )
    pooling: str | None = Field(
        None,
        pattern="^(all|real)$",
        description="intent vector: mean over all block_size positions (the "
        "paper's code) or over the real events only",
    )
    clu_pull: str | None = Field(
        None,
        pattern="^(all|nearest)$",
        description="clustering pull towards every center (the paper) or the "
        "nearest one",
    )
    item_bias: bool | None = Field(
        True,
        description="a learned score bias per item (tracks what is popular now)",
    )
    pop_prior: bool | None = Field(
        None,
        description="add a learned weight times log(1 + the item's recent "
        "event count, half-life 2000 events) to its score",
    )
    trans_prior: bool | None = Field(
        None,
        description="add a learned weight times log(1 + how often the item came "
        "right after the sequence's last item) to its score",
    )
    rec_loss: str | None = Field(
        None, pattern="^(bce|ce)$", description="bce (the paper) or ce (full softmax)"
    )
    ce_max_rows: int | None = Field(
        1024,
        ge=0,
        description="rec_loss=ce: at most this many positions per step in the "
        "full softmax (windows' last positions first; 0: all), so a step's "
        "logits stay ce_max_rows x items; may change on resume",
    )
    device: str = Field("cpu", description="torch device: cpu, cuda, cuda:1...")

    @field_validator("device")
    @classmethod
    def _device_exists(cls, value: str) -> str:
        import torch

        try:
            device = torch.device(value)
        except RuntimeError as exc:
            raise ValueError(f"not a torch device: {exc}") from None
        if device.type == "cuda":
            count = torch.cuda.device_count()
            if (device.index or 0) >= count:
                raise ValueError(f"this machine has {count} CUDA device(s)")
        return value

    seed: int = Field(0, description="seed of initialisation and sampling")

    # -- learning -------------------------------------------------------------
    fresh_per_step: int = Field(
        256, ge=1, description="fresh users per mini-batch (and new events per step)"
    )
    steps_per_batch: int = Field(
        8, ge=1, le=100, description="optimizer steps per mini-batch"
    )
    max_deferred_batches: int = Field(
        4,
        ge=1,
        le=1000,
        description="the trainer process takes one pass of steps over new events "
        "at once and the other steps_per_batch - 1 while no record waits; the "
        "newest this many batches keep theirs (an overloaded trainer learns less "
        "per event, not later)",
    )
    replay_per_step: int = Field(
        32, ge=0, description="replayed recent sequences added to each step"
    )
    replay_size: int = Field(
        20_000, ge=1, description="recent user sequences kept for replay"
    )
    vocab_capacity: int = Field(
        200_000,
        ge=2,
        description="most item rows; when full the least recently seen item's "
        "row is recycled",
    )
    user_capacity: int = Field(
        1_000_000, ge=1, description="users whose last learned version is kept"
    )
    heap_trim_every_s: float = Field(
        2.0,
        ge=0,
        description="hand the heap's free pages back to the system at most this "
        "often (keeps memory flat under tensors of changing shapes; 0: never)",
    )
    lr: float = Field(5e-3, gt=0, description="Adam learning rate")
    metrics_window: int = Field(
        5_000, ge=1, description="events in the live HR/NDCG window"
    )
    max_wait_ms: int = Field(
        200,
        ge=1,
        description="how long the trainer process waits for a record when it "
        "has nothing else to do",
    )

    # -- schedules ------------------------------------------------------------
    publish_every_steps: int = Field(
        200, ge=1, description="publish a model after this many steps..."
    )
    publish_every_s: float = Field(60.0, gt=0, description="...or seconds")
    keep_versions: int = Field(5, ge=1, description="published versions kept")
    checkpoint_every_steps: int = Field(
        100, ge=1, description="checkpoint after this many steps..."
    )
    checkpoint_every_s: float = Field(30.0, gt=0, description="...or seconds")

    # -- drift ----------------------------------------------------------------
    drift_window: int = Field(2000, ge=10, description="assignments per drift window")
    drift_js_min: float = Field(
        0.1, ge=0, le=1, description="least intent-mix divergence that can alarm"
    )
    drift_js_ratio: float = Field(
        3.0, ge=1, description="times the recent median divergence it must exceed"
    )
    drift_warmup_windows: int = Field(
        5,
        ge=0,
        description="windows learned before any drift alarm (the model's first "
        "improvement is not drift)",
    )
    drift_cooldown_windows: int = Field(
        2, ge=0, description="quiet windows after an intent-mix alarm"
    )
    drift_adwin_delta: float = Field(
        0.002,
        gt=0,
        lt=1,
        description="ADWIN confidence on the prequential hit stream (smaller: "
        "fewer false alarms, later detection)",
    )
    drift_ph_threshold: float = Field(
        20.0, gt=0, description="Page-Hinkley threshold on the training loss"
    )
    drift_ph_delta: float = Field(
        0.02,
        ge=0,
        description="loss change per step Page-Hinkley tolerates (slow learning "
        "is not a change)",
    )
    drift_log_bytes: int = Field(
        64 * 2**20,
        ge=0,
        description="size at which drift.jsonl rolls over to drift.jsonl.1 (0: no log)",
    )

    # -- metrics --------------------------------------------------------------
    metrics_port: int | None = Field(
        None, ge=0, le=65535, description="Prometheus port; None: no server"
    )
    metrics_host: str = Field("127.0.0.1", description="Prometheus listen address")

    @property
    def models_dir(self) -> Path:
        return self.work_dir / "models"

    @property
    def checkpoint_path(self) -> Path:
        return self.work_dir / "checkpoint.pt"

    @property
    def drift_log_path(self) -> Path:
        return self.work_dir / "drift.jsonl"


def load_trainer_settings(**overrides) -> TrainerSettings:
    from elcrec.settings import load_settings

    return load_settings(
        TrainerSettings, "trainer", reject_unknown_env=True, **overrides
    )


class TrainerMetrics:
    """Prometheus metrics of the trainer (prefix ``elcrec_``), own registry."""

    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = r = registry or CollectorRegistry()
        self.updates = Counter(
            "elcrec_trainer_updates",
            "sequence updates received, by outcome",
            ["outcome"],
            registry=r,
        )
        self.events = Counter(
            "elcrec_trainer_events_learned", "new events learned from", registry=r
        )
        self.steps = Counter(
            "elcrec_trainer_steps", "optimizer steps taken", registry=r
        )
        self.skipped = Counter(
            "elcrec_trainer_skipped_steps",
            "steps skipped for a non-finite loss or gradient",
            registry=r,
        )
        self.step_seconds = Histogram(
            "elcrec_trainer_step_seconds",
            "time of one predict-and-learn mini-batch",
            buckets=(0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
            registry=r,
        )
        self.freshness = Histogram(
            "elcrec_trainer_event_to_step_seconds",
            "from an update being durable in the state store to the step using it",
            buckets=(0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60),
            registry=r,
        )
        self.loss = Gauge(
            "elcrec_trainer_loss", "last step's loss, by term", ["term"], registry=r
        )
        self.live = Gauge(
            "elcrec_live_quality_ratio",
            "prequential metric over the sliding window (hr@k, ndcg@k)",
            ["metric"],
            registry=r,
        )
        self.vocab = Gauge(
            "elcrec_trainer_vocab_items", "items with an embedding row", registry=r
        )
        self.model_version = Gauge(
            "elcrec_model_version",
            "number of the last published model version",
            registry=r,
        )
        self.publishes = Counter(
            "elcrec_model_publishes", "models published", registry=r
        )
        self.js = Gauge(
            "elcrec_intent_js_divergence",
            "Jensen-Shannon divergence (base 2) of the last window's intent "
            "histogram from the previous window's and the published model's",
            ["reference"],
            registry=r,
        )
        self.center_shift = Gauge(
            "elcrec_intent_center_shift",
            "distance the intent centers moved since the last publish (mean, max)",
            ["stat"],
            registry=r,
        )
        self.empty_intents = Gauge(
            "elcrec_intents_empty",
            "intents with no member in the last window",
            registry=r,
        )
        self.intent_share = Gauge(
            "elcrec_intent_share_ratio",
            "share of the last window's assignments, per intent",
            ["intent"],
            registry=r,
        )
        self.drift_alarms = Counter(
            "elcrec_drift_alarms",
            "drift alarms, by detector and direction",
            ["detector", "direction"],
            registry=r,
        )
        self.drift_windows = Counter(
            "elcrec_drift_windows", "drift windows closed", registry=r
        )
        # Every (detector, direction) series exists from the start, at 0, so
        # that increase() sees the first alarm of each kind.
        for detector in ("intent_mix", "quality", "loss"):
            for direction in ("rise", "fall"):
                self.drift_alarms.labels(detector, direction)
        self.queue = Gauge(
            "elcrec_trainer_queue_records",
            "records waiting between poll and train",
            registry=r,
        )

    def serve(self, port: int, host: str = "127.0.0.1"):
        from prometheus_client import start_http_server

        server, _thread = start_http_server(port, addr=host, registry=self.registry)
        logger.info("Serving trainer metrics host=%s port=%d", host, server.server_port)
        return server


@dataclass
class Incoming:
    """One record of ``elcrec.sequences`` with where it came from."""

    partition: int
    offset: int
    record: SequenceRecord
    received_at: float = field(default_factory=time.time)


class TrainerLoop:
    """Deduplicate, learn, checkpoint and publish; no Kafka.

    Args:
        settings: validated trainer settings.
        on_publish: called with each new :class:`~elcrec.publish.ModelManifest`
            (the Kafka app announces it on ``elcrec.models``).
        on_drift: called with each drift record (a closed window or an alarm;
            the Kafka app sends them to ``elcrec.drift``).
        metrics: where to report; a fresh registry when None.
    """

    def __init__(
        self,
        settings: TrainerSettings,
        on_publish: Callable | None = None,
        metrics: TrainerMetrics | None = None,
        on_drift: Callable | None = None,
    ):
        from elcrec.online import OnlineTrainer

        self.settings = settings
        self.metrics = metrics or TrainerMetrics()
        self.on_publish = on_publish
        self.on_drift = on_drift
        self.drift = None
        self.offsets: dict[int, int] = {}  # partition -> next offset to learn
        self.user_versions: OrderedDict[str, int] = OrderedDict()
        self.versions_published = 0
        self.records_learned = 0
        self.last_version: str | None = None
        self.last_report = None
        # From each learned event's time to the end of the first step that
        # trained on it, for the last 100 000 events; meaningful when events
        # carry live times (replay --now).
        self.latency_ms: deque[float] = deque(maxlen=100_000)

        path = settings.checkpoint_path
        if path.exists():
            try:
                self.trainer, extra = OnlineTrainer.load_checkpoint(
                    path, settings.device
                )
            except Exception as exc:
                raise TrainerError(
                    f"cannot read the trainer checkpoint {path}: {exc}; move it away "
                    "to start from scratch"
                ) from exc
            self.offsets = {int(p): int(o) for p, o in extra.get("offsets", {}).items()}
            self.user_versions = OrderedDict(extra.get("user_versions", []))
            self.records_learned = int(extra.get("records_learned", 0))
            self.versions_published = int(extra.get("versions_published", 0))
            if "drift" in extra:
                # The checkpoint is this process's own file, trusted like the
                # state folder; published models never hold pickles.
                self.drift = pickle.loads(bytes(extra["drift"]))
            logger.info(
                "Resumed from checkpoint path=%s step=%d events=%d offsets=%s",
                path,
                self.trainer.step,
                self.trainer.events_seen,
                self.offsets,
            )
            self._apply_loss_settings()
            self._warn_changed_settings()
            changed = self.trainer.reconfigure(self._online_config())
            if changed:
                logger.info("Resumed with changed learning settings %s", changed)
        else:
            self.trainer = self._new_trainer()
        if self.drift is None:
            from elcrec.drift import DriftMonitor

            self.drift = DriftMonitor(
                self.trainer.model.config.n_intents,
                window=settings.drift_window,
                js_min=settings.drift_js_min,
                js_ratio=settings.drift_js_ratio,
                warmup_windows=settings.drift_warmup_windows,
                cooldown_windows=settings.drift_cooldown_windows,
                adwin_delta=settings.drift_adwin_delta,
                ph_threshold=settings.drift_ph_threshold,
                ph_delta=settings.drift_ph_delta,
            )
        self._heap = HeapTrimmer(settings.heap_trim_every_s)
        # Checkpoints and publications are written by one background thread
        # from a copy taken between steps, so a slow disk never holds up
        # learning; at most one write is in flight.
        self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer")
        self._write: Future | None = None
        self._write_publishes: dict | None = None
        self._last_publish_step = self.trainer.step
        self._last_publish_t = time.monotonic()
        self._last_ckpt_step = self.trainer.step
        self._last_ckpt_t = time.monotonic()

    def _apply_loss_settings(self) -> None:
        """A resumed model takes the loss settings given (``LOSS_OPTIONS``):
        no weight depends on them."""
        from elcrec.online import LOSS_OPTIONS

        self.trainer.set_loss_options(
            {
                key: getattr(self.settings, key)
                for key in LOSS_OPTIONS
                if getattr(self.settings, key) is not None
            }
        )

    def _warn_changed_settings(self) -> None:
        """A checkpoint keeps its model's shape: say which settings it ignores."""
        config = self.trainer.model.config
        changed = {
            key: (getattr(config, key), getattr(self.settings, key))
            for key in MODEL_SETTINGS
            if getattr(self.settings, key) is not None
            and getattr(config, key) != getattr(self.settings, key)
        }
        if changed:
            logger.warning(
                "The checkpoint's model keeps its own settings; these differ and "
                "are ignored until the work folder is moved away: %s",
                ", ".join(f"{k}={a!r} (set {b!r})" for k, (a, b) in changed.items()),
            )

    def _online_config(self):
        from elcrec.online import OnlineConfig

        s = self.settings
        return OnlineConfig(
            fresh_per_step=s.fresh_per_step,
            steps_per_batch=s.steps_per_batch,
            max_deferred_batches=s.max_deferred_batches,
            replay_per_step=s.replay_per_step,
            replay_size=s.replay_size,
            vocab_capacity=s.vocab_capacity,
            lr=s.lr,
            metrics_window=s.metrics_window,
            seed=s.seed,
        )

    def _new_trainer(self):
        from elcrec.model import ELCRecConfig
        from elcrec.online import OnlineTrainer
        from elcrec.publish import read_model

        s = self.settings
        overrides = {
            k: getattr(s, k) for k in MODEL_SETTINGS if getattr(s, k) is not None
        }
        if s.dropout is not None:
            overrides.update(dropout=s.dropout, attn_dropout=s.dropout)
        model_config = (
            ELCRecConfig.preset(s.preset, **overrides)
            if s.preset
            else ELCRecConfig(**overrides)
        )
        trainer = OnlineTrainer(model_config, self._online_config(), s.device)
        if s.warm_start is not None:
            manifest, state_dict, vocab, config = read_model(s.warm_start)
            trainer.warm_start(state_dict, vocab, config, overrides)
            logger.info(
                "Warm start from model path=%s version=%s items=%d",
                s.warm_start,
                manifest.version,
                len(vocab),
            )
        return trainer

    # -- learning ---------------------------------------------------------------

    def handle(self, batch: Iterable[Incoming], defer: bool = False) -> int:
        """Learn from a batch of records; returns how many were learned.

        ``defer``: one pass of steps over the new events now, the rest kept
        for :meth:`learn_deferred` (the Kafka app's latency policy); without
        it every step is taken before this returns.
        """
        from elcrec.online import SequenceUpdate

        t0 = time.monotonic()
        updates, oldest, new_events = [], None, []
        for inc in batch:
            if inc.offset < self.offsets.get(inc.partition, 0):
                self.metrics.updates.labels("replayed").inc()
                continue
            self.offsets[inc.partition] = inc.offset + 1
            rec = inc.record
            seen = self.user_versions.get(rec.user_id, 0)
            if rec.version <= seen:
                self.metrics.updates.labels("stale").inc()
                continue
            self.user_versions[rec.user_id] = rec.version
            self.user_versions.move_to_end(rec.user_id)
            n_new = rec.version - seen
            updates.append(SequenceUpdate(rec.user_id, rec.items, n_new, rec.ts[-1]))
            self.records_learned += 1
            self.metrics.updates.labels("learned").inc()
            oldest = rec.updated_at if oldest is None else min(oldest, rec.updated_at)
            new_events.append((rec.user_id, rec.ts[-n_new:]))
        while len(self.user_versions) > self.settings.user_capacity:
            self.user_versions.popitem(last=False)
        self.collect_writes()
        if not updates:
            return 0

        report = self.last_report = self.trainer.learn_many(updates, defer=defer)
        self._report(report, time.monotonic() - t0, oldest)
        # From each new event's time to the end of the first step that
        # trained on it. Replayed history has old event times: only live ones
        # (within an hour) measure it.
        for user, times in new_events:
            used_ms = report.used_at.get(user, time.time()) * 1000.0
            self.latency_ms.extend(
                used_ms - ts for ts in times if 0 <= used_ms - ts < 3_600_000
            )
        self._watch_drift(report)
        if not self.maybe_publish():  # a publication writes a checkpoint too
            self.maybe_checkpoint()
        self._heap.maybe_trim()
        return len(updates)

    def learn_deferred(self) -> bool:
        """Take one deferred step (see :meth:`handle`); False if none is left."""
        report = self.trainer.learn_deferred()
        if report is None:
            return False
        m = self.metrics
        m.steps.inc(report.steps)
        m.skipped.inc(report.skipped)
        for term, value in report.losses.items():
            m.loss.labels(term).set(value)
        if not self.maybe_publish():
            self.maybe_checkpoint()
        self._heap.maybe_trim()
        return True

    def _report(self, report, seconds: float, oldest_ms: int | None) -> None:
        m = self.metrics
        m.events.inc(report.events)
        m.steps.inc(report.steps)
        m.skipped.inc(report.skipped)
        m.step_seconds.observe(seconds)
        if oldest_ms is not None:
            m.freshness.observe(max(0.0, time.time() - oldest_ms / 1000.0))
        for term, value in report.losses.items():
            m.loss.labels(term).set(value)
        for name, value in self.trainer.live_metrics().items():
            m.live.labels(name).set(value)
        m.vocab.set(len(self.trainer.vocab))

    def _watch_drift(self, report) -> None:
        d, m = self.drift, self.metrics
        d.live = self.trainer.live_metrics()
        d.position = self.trainer.events_seen
        n_before = d.n_alarms
        d.update_hits(float(r < 20) for r in report.ranks)
        if report.steps:
            d.update_loss(report.losses.get("total", float("nan")))
        if len(report.assignments) >= d.window - d.filled:
            # Movement is measured when a window closes: fetch the centers then.
            d.update_centers(self.trainer.model.centers.detach().cpu().numpy())
        windows = d.update_assignments(report.assignments)
        alarms = d.alarms[len(d.alarms) - (d.n_alarms - n_before) :]
        if windows:
            last = windows[-1]
            m.drift_windows.inc(len(windows))
            if last.js_prev is not None:
                m.js.labels("previous").set(last.js_prev)
            if last.js_published is not None:
                m.js.labels("published").set(last.js_published)
            if last.center_shift_mean is not None:
                m.center_shift.labels("mean").set(last.center_shift_mean)
                m.center_shift.labels("max").set(last.center_shift_max)
            m.empty_intents.set(last.empty_intents)
            total = max(1, sum(last.counts))
            for k, c in enumerate(last.counts):
                m.intent_share.labels(str(k)).set(c / total)
        for record in windows:
            self._emit(record)
        for alarm in alarms:
            self._raise(alarm)

    def _raise(self, alarm) -> None:
        self.metrics.drift_alarms.labels(alarm.detector, alarm.direction).inc()
        logger.warning(
            "Drift alarm detector=%s direction=%s at_event=%d value=%.4g before=%s "
            "rising=%s falling=%s",
            alarm.detector,
            alarm.direction,
            alarm.at_event,
            alarm.value,
            alarm.before,
            [r.intent for r in alarm.rising],
            [f.intent for f in alarm.falling],
        )
        self._emit(alarm)

    def _emit(self, record) -> None:
        self._log_drift(record)
        if self.on_drift is not None:
            self.on_drift(record)

    def _log_drift(self, record) -> None:
        """Append a drift record to ``drift.jsonl`` (read by ``elcrec drift-report``).

        The log rolls over to ``drift.jsonl.1`` at ``drift_log_bytes``, so it
        is bounded. After a crash the records since the last checkpoint are
        written again; readers keep the last copy of each window and alarm.
        """
        limit = self.settings.drift_log_bytes
        if limit == 0:
            return
        path = self.settings.drift_log_path
        line = record.model_dump_json() + "\n"
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            if path.exists() and path.stat().st_size + len(line) > limit:
                path.replace(path.with_name(path.name + ".1"))
            with path.open("a", encoding="utf-8") as f:
                f.write(line)
        except OSError as exc:  # monitoring must not stop training
            logger.warning("Could not write the drift log path=%s error=%s", path, exc)

    # -- checkpoints and publishing ------------------------------------------------

    def maybe_checkpoint(self, force: bool = False) -> bool:
        """Start writing a checkpoint in the background if one is due (and the
        previous write has finished); True if one was started."""
        s = self.settings
        self.collect_writes()
        due = (
            self.trainer.step - self._last_ckpt_step >= s.checkpoint_every_steps
            or time.monotonic() - self._last_ckpt_t >= s.checkpoint_every_s
        )
        if not (force or due and self.trainer.step != self._last_ckpt_step):
            return False
        if self._write is not None:
            return False  # due again after the write in flight
        self._write = self._writer.submit(self._write_job, self._snapshot(), None)
        return True

    def checkpoint(self) -> None:
        """Write a checkpoint now (after any write in flight)."""
        self.wait_writes()
        self._write_job(self._snapshot(), None)

    def _snapshot(self, publishing: bool = False) -> dict:
        """What a checkpoint holds, copied, so learning can go on meanwhile;
        ``publishing``: the checkpoint goes with a publication."""
        extra = {
            "offsets": {str(p): o for p, o in self.offsets.items()},
            "user_versions": [[u, v] for u, v in self.user_versions.items()],
            "records_learned": self.records_learned,
            "versions_published": self.versions_published + publishing,
            "drift": pickle.dumps(self.drift),
        }
        self._last_ckpt_step = self.trainer.step
        self._last_ckpt_t = time.monotonic()
        return {
            "state": self.trainer.state_dict(copy=True),
            "extra": extra,
            "step": self.trainer.step,
        }

    def _write_job(self, snapshot: dict, publication: dict | None):
        """Runs on the writer thread (or inline): checkpoint, then the model.

        The checkpoint is never behind a published version, so a restart
        continues from at least what downstream already has.
        """
        from elcrec.online import write_checkpoint
        from elcrec.publish import publish_model

        write_checkpoint(
            self.settings.checkpoint_path, snapshot["state"], snapshot["extra"]
        )
        logger.debug(
            "Checkpoint written step=%d offsets=%s",
            snapshot["step"],
            snapshot["extra"]["offsets"],
        )
        if publication is None:
            return None
        state = snapshot["state"]
        return publish_model(
            self.settings.models_dir,
            state["model"],
            state["vocab"]["ids"],
            state["model_config"],
            steps=snapshot["step"],
            **publication["manifest"],
            keep=self.settings.keep_versions,
        )

    def collect_writes(self, wait: bool = False) -> None:
        """Finish the bookkeeping of a background write that has ended.

        A failed write is raised here, on the training thread, and stops the
        trainer as a failed synchronous write would (the files on disk are
        whole: every write is atomic).
        """
        write = self._write
        if write is None or not (wait or write.done()):
            return
        publication = self._write_publishes
        self._write, self._write_publishes = None, None
        manifest = write.result()
        if publication is not None:
            self._published(manifest, publication)

    def wait_writes(self) -> None:
        """Wait for the write in flight, if any, and finish its bookkeeping."""
        self.collect_writes(wait=True)

    def maybe_publish(self, force: bool = False) -> bool:
        """Start publishing in the background if a publication is due (and no
        write is in flight); True if one was started. ``force``: due now."""
        s = self.settings
        self.collect_writes()
        if self.trainer.step == 0 or self.trainer.step == self._last_publish_step:
            return False
        due = (
            self.trainer.step - self._last_publish_step >= s.publish_every_steps
            or time.monotonic() - self._last_publish_t >= s.publish_every_s
        )
        if not (force or due) or self._write is not None:
            return False
        publication = self._publication()
        if publication is None:
            return False
        self._write_publishes = publication
        self._write = self._writer.submit(
            self._write_job, self._snapshot(True), publication
        )
        return True

    def publish(self):
        """Publish the current model now (checkpointing first), after any write
        in flight; its manifest, or None if the model is not finite."""
        self.wait_writes()
        publication = self._publication()
        if publication is None:
            return None
        manifest = self._write_job(self._snapshot(True), publication)
        self._published(manifest, publication)
        return manifest

    def _publication(self) -> dict | None:
        """What a publication records besides the weights, taken with them."""
        if not self.trainer.parameters_finite():
            logger.error(
                "Not publishing: the model has non-finite parameters step=%d",
                self.trainer.step,
            )
            return None
        self._last_publish_step = self.trainer.step
        self._last_publish_t = time.monotonic()
        return {
            "manifest": {
                "events_seen": self.trainer.events_seen,
                "records_learned": self.records_learned,
                "live_metrics": self.trainer.live_metrics(),
                "source_offsets": {str(p): o for p, o in self.offsets.items()},
            },
            "item_names": self.trainer.intent_items(5),
            "centers": self.trainer.model.centers.detach().cpu().numpy().copy(),
        }

    def _published(self, manifest, publication: dict) -> None:
        from elcrec.publish import version_number

        self.versions_published += 1
        self.last_version = manifest.version
        self.metrics.publishes.inc()
        self.metrics.model_version.set(version_number(manifest.version))
        self.drift.item_names = publication["item_names"]
        self.drift.update_centers(publication["centers"])
        self.drift.mark_published(manifest.version)
        if self.on_publish is not None:
            self.on_publish(manifest)

    def close(self) -> None:
        """Publish what is new, and checkpoint; waits for every write."""
        try:
            self.wait_writes()
            published = False
            if self.trainer.step not in (0, self._last_publish_step):
                published = self.publish() is not None  # checkpoints first
            if not published:
                self.checkpoint()
        finally:
            self._writer.shutdown(wait=True)

    def summary(self) -> dict:
        """Totals since the work folder was created (a resumed run goes on
        counting), live quality, and the latency from event to step when
        events carried live times (``replay --now``, a live stream)."""
        live = self.trainer.live_metrics()
        out = {
            "events": self.trainer.events_seen,
            "records": self.records_learned,
            "steps": self.trainer.step,
            "skipped_steps": self.trainer.skipped_steps,
            "items": len(self.trainer.vocab),
            "versions_published": self.versions_published,
            "drift_alarms": self.drift.n_alarms,
            "last_version": self.last_version,
            "predicted": self.trainer.metrics.count,
            "live_hr@20": round(live["hr@20"], 4),
            "live_ndcg@20": round(live["ndcg@20"], 4),
        }
        if self.latency_ms:
            out["event_to_step_ms_p50"] = _percentile(self.latency_ms, 50)
            out["event_to_step_ms_p99"] = _percentile(self.latency_ms, 99)
        return out


def _write_json(path: Path, value: dict) -> None:
    """Write ``value`` as JSON atomically (readers see the old or the new file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(value, indent=1) + "\n")
    tmp.replace(path)


def _percentile(values, q: float) -> float | None:
    if not values:
        return None
    return round(float(np.percentile(np.fromiter(values, dtype=np.float64), q)), 1)


def _listener(app: TrainerApp):
    from kafka import ConsumerRebalanceListener

    class Listener(ConsumerRebalanceListener):
        on_partitions_revoked = staticmethod(_Seeker(app).on_partitions_revoked)
        on_partitions_assigned = staticmethod(_Seeker(app).on_partitions_assigned)

    return Listener()


class _Seeker:
    """Seeks newly assigned partitions to what the trainer has learned."""

    def __init__(self, app: TrainerApp):
        self.app = app

    def on_partitions_revoked(self, revoked):
        logger.info(
            "Partitions revoked partitions=%s", sorted(tp.partition for tp in revoked)
        )

    def on_partitions_assigned(self, assigned):
        consumer = self.app._consumer
        for tp in assigned:
            offset = self.app.learned_offsets.get(tp.partition)
            if offset is None:
                consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
        logger.info(
            "Partitions assigned partitions=%s from_offsets=%s",
            sorted(tp.partition for tp in assigned),
            {
                tp.partition: self.app.learned_offsets.get(tp.partition)
                for tp in assigned
            },
        )


class TrainerApp:
    """The trainer process: poll thread + training loop + model announcements."""

    def __init__(self, settings: TrainerSettings):
        self.settings = settings
        self.metrics = TrainerMetrics()
        self.loop = TrainerLoop(
            settings,
            on_publish=self._announce,
            metrics=self.metrics,
            on_drift=self._send_drift,
        )
        self.learned_offsets = dict(self.loop.offsets)  # read by the poll thread
        self._queue: queue.Queue[Incoming] = queue.Queue(maxsize=settings.queue_records)
        self._stop = threading.Event()
        self._poll_error: Exception | None = None
        self._consumer = None
        self._producer = None
        self.bad_records = 0
        self.metrics_port: int | None = None

    def stop(self) -> None:
        self._stop.set()

    def install_signal_handlers(self) -> None:
        """SIGTERM and SIGINT stop gracefully; a second SIGINT interrupts."""
        install_stop_handlers(self.stop)

    def run(self) -> None:
        from kafka import KafkaConsumer, KafkaProducer
        from kafka.errors import KafkaError

        s = self.settings
        server = (
            self.metrics.serve(s.metrics_port, s.metrics_host)
            if s.metrics_port is not None
            else None
        )
        # The bound port (metrics_port 0 picks a free one).
        self.metrics_port = None if server is None else server.server_port
        security = client_options(s)
        try:
            self._producer = KafkaProducer(
                bootstrap_servers=s.bootstrap_servers,
                client_id=f"{s.client_id}-producer",
                **security,
            )
            self._consumer = KafkaConsumer(
                bootstrap_servers=s.bootstrap_servers,
                **security,
                group_id=s.group_id,
                client_id=s.client_id,
                enable_auto_commit=False,
                auto_offset_reset="earliest",
                session_timeout_ms=s.session_timeout_ms,
                heartbeat_interval_ms=s.heartbeat_interval_ms,
            )
        except KafkaError as exc:
            raise TrainerError(
                f"cannot reach Kafka at {s.bootstrap_servers} (option bootstrap_servers): {exc}"
            ) from exc
        try:
            wait_for_topic(self._consumer, s.sequences_topic)
        except ElcrecError:
            self._consumer.close(autocommit=False)
            self._producer.close(timeout=5)
            raise
        self._consumer.subscribe([s.sequences_topic], listener=_listener(self))
        poller = threading.Thread(
            target=self._poll_loop, name="trainer-poll", daemon=True
        )
        poller.start()
        logger.info(
            "Trainer started topic=%s group=%s work_dir=%s",
            s.sequences_topic,
            s.group_id,
            s.work_dir,
        )
        try:
            while not self._stop.is_set():
                if self._poll_error is not None:
                    raise TrainerError(
                        f"polling failed: {self._poll_error}"
                    ) from self._poll_error
                # New records first: one pass of steps over them at once, the
                # other steps while nothing waits.
                batch = self._next_batch(wait=not self.loop.trainer.deferred_steps)
                if batch:
                    self.loop.handle(batch, defer=True)
                    self.learned_offsets = dict(self.loop.offsets)
                elif not self.loop.learn_deferred():
                    self.loop.maybe_publish()
        finally:
            self._stop.set()
            poller.join(timeout=10)
            self.loop.close()
            self.learned_offsets = dict(self.loop.offsets)
            self._commit()
            self._consumer.close(autocommit=False)
            self._producer.close(timeout=5)
            if server is not None:
                server.shutdown()
            summary = self.loop.summary()
            _write_json(self.settings.work_dir / "summary.json", summary)
            logger.info("Trainer stopped summary=%s", json.dumps(summary))

    def _next_batch(self, wait: bool = True) -> list[Incoming]:
        """What is queued, up to ``fresh_per_step`` distinct users; when the
        queue is empty, waits up to ``max_wait_ms`` for a record if ``wait``."""
        s = self.settings
        batch: list[Incoming] = []
        users: set[str] = set()
        if wait:
            try:
                inc = self._queue.get(timeout=s.max_wait_ms / 1000.0)
            except queue.Empty:
                return batch
            batch.append(inc)
            users.add(inc.record.user_id)
        while len(users) < s.fresh_per_step:
            try:
                inc = self._queue.get_nowait()
            except queue.Empty:
                break
            batch.append(inc)
            users.add(inc.record.user_id)
        self.metrics.queue.set(self._queue.qsize())
        return batch

    # -- the poll thread ---------------------------------------------------------

    def _poll_loop(self) -> None:
        from pydantic import ValidationError

        consumer = self._consumer
        pending: list[Incoming] = []
        paused = False
        last_commit = time.monotonic()
        try:
            while not self._stop.is_set():
                records = consumer.poll(timeout_ms=100, max_records=2000)
                for tp, batch in records.items():
                    for r in batch:
                        try:
                            rec = SequenceRecord.model_validate_json(r.value)
                        except ValidationError as exc:
                            self.bad_records += 1
                            self.metrics.updates.labels("invalid").inc()
                            logger.warning(
                                "Skipping an invalid sequence record partition=%d "
                                "offset=%d error=%s",
                                tp.partition,
                                r.offset,
                                str(exc).splitlines()[0],
                            )
                            continue
                        pending.append(Incoming(tp.partition, r.offset, rec))
                while pending:
                    try:
                        self._queue.put_nowait(pending[0])
                    except queue.Full:
                        break
                    pending.pop(0)
                if pending and not paused:
                    consumer.pause(*consumer.assignment())
                    paused = True
                elif not pending and paused:
                    consumer.resume(*consumer.paused())
                    paused = False
                if time.monotonic() - last_commit > 5:
                    self._commit()
                    last_commit = time.monotonic()
        except Exception as exc:  # surfaced by the training loop
            self._poll_error = exc

    def _commit(self) -> None:
        from kafka import OffsetAndMetadata, TopicPartition

        # The checkpoint, not Kafka, is the source of truth; committing what
        # the trainer has learned lets lag monitoring see its progress.
        try:
            offsets = {
                TopicPartition(self.settings.sequences_topic, p): OffsetAndMetadata(
                    o, "", -1
                )
                for p, o in self.learned_offsets.items()
            }
            if offsets:
                self._consumer.commit(offsets)
        except Exception as exc:
            logger.warning("Could not commit trainer offsets error=%s", exc)

    def _send_drift(self, record) -> None:
        """A drift window report or alarm, as JSON on the drift topic."""
        self._producer.send(
            self.settings.drift_topic,
            key=record.kind.encode(),
            value=record.model_dump_json().encode(),
        )

    def _announce(self, manifest) -> None:
        record = {
            "version": manifest.version,
            "path": str((self.settings.models_dir / manifest.version).resolve()),
            "created_at": manifest.created_at.isoformat(),
            "checksum": manifest.checksum,
            "steps": manifest.steps,
            "events_seen": manifest.events_seen,
            "live_metrics": manifest.live_metrics,
        }
        self._producer.send(
            self.settings.models_topic,
            key=manifest.version.encode(),
            value=json.dumps(record).encode(),
        )
        self._producer.flush(timeout=10)
