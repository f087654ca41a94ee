"""Intent drift: how users' intents and the model's quality move over the stream.

:class:`DriftMonitor` is fed, after each training step, the intents the model
assigned to the users it just learned from, the prequential hits and the loss.
It measures, per window of ``window`` assignments:

- the histogram of intent assignments and its Jensen–Shannon divergence (base
  2, in [0, 1]) from the previous window and from the window of the last
  published model;
- the mean and max movement of the intent centers since the last publish
  (Euclidean, between unit vectors, so in [0, 2]);
- the intents with no members in the window;

and raises alarms, each change reported once, after ``warmup_windows``
windows (a model still learning its first events improves steadily, which is
not drift; the quality and loss detectors start afresh when the warm-up ends):

- ``intent_mix``: the divergence from the previous window exceeds both
  ``js_min`` and ``js_ratio`` times the median of the recent divergences (the
  stream's own noise floor, which depends on the window size and on how fast
  the model is still changing). An alarm is followed by ``cooldown_windows``
  quiet windows.
- ``quality`` and ``loss``: river's ADWIN over the prequential hit stream
  (hit@20 as 0/1) and Page-Hinkley over the loss, both directions; the
  direction is read off the estimates before and after.

Positions (``events_from``, ``events_to``, ``at_event``) count events learned
when the caller keeps :attr:`DriftMonitor.position` up to date (the trainer
does), else assignments.

Like river's detectors, the monitor logs nothing: it returns reports and alarms
and the trainer decides what to log and publish.

Example:
    >>> m = DriftMonitor(n_intents=2, window=4, warmup_windows=0, js_min=0.2)
    >>> [r.js_prev for r in m.update_assignments([0, 0, 0, 0, 1, 1, 1, 1])]
    [None, 1.0]
    >>> m.alarms[-1].detector, m.alarms[-1].rising[0].intent
    ('intent_mix', 1)
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime

import numpy as np
from pydantic import BaseModel, Field
from river.drift import ADWIN, PageHinkley


def js_divergence(p: Sequence[float], q: Sequence[float]) -> float:
    """Jensen–Shannon divergence of two histograms (normalised here), base 2.

    >>> js_divergence([1, 0], [0, 1]), js_divergence([1, 1], [2, 2])
    (1.0, 0.0)
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    if p.sum() <= 0 or q.sum() <= 0:
        return 0.0
    p, q = p / p.sum(), q / q.sum()
    m = (p + q) / 2

    def kl(a, b):
        mask = a > 0
        return float((a[mask] * np.log2(a[mask] / b[mask])).sum())

    return min(1.0, max(0.0, (kl(p, m) + kl(q, m)) / 2))


class IntentShare(BaseModel):
    """One intent's share of assignments before and after a change."""

    intent: int
    share_before: float
    share_after: float
    top_items: list[str] = Field(default_factory=list)


class WindowReport(BaseModel):
    """The ``elcrec.drift`` record of one closed window."""

    kind: str = "window"
    window: int
    events_from: int
    events_to: int
    created_at: datetime
    model_version: str | None = None
    counts: list[int]
    js_prev: float | None = None
    js_published: float | None = None
    empty_intents: int
    center_shift_mean: float | None = None
    center_shift_max: float | None = None
    live: dict[str, float] = Field(default_factory=dict)


class DriftAlarm(BaseModel):
    """The ``elcrec.drift`` record of one detected change."""

    kind: str = "alarm"
    detector: str  # intent_mix, quality, loss
    direction: str  # rise or fall
    at_event: int
    created_at: datetime
    value: float
    before: float | None = None
    after: float | None = None
    model_version: str | None = None
    rising: list[IntentShare] = Field(default_factory=list)
    falling: list[IntentShare] = Field(default_factory=list)


class DriftMonitor:
    """Windows of intent assignments, center movement and change detectors.

    Args:
        n_intents: number of intents K.
        window: assignments per window.
        js_min: smallest divergence from the previous window that can alarm.
        js_ratio: how many times the median recent divergence it must exceed.
        history: how many recent divergences make the noise floor.
        warmup_windows: windows before the first alarm of any detector.
        cooldown_windows: quiet windows after an intent-mix alarm.
        adwin_delta: ADWIN's confidence on the hit stream.
        ph_threshold: Page-Hinkley's threshold on the loss.
        ph_delta: the loss change per step Page-Hinkley tolerates (a model that
            keeps learning lowers its loss slowly; that is not a change).
        top_intents: intents named in an alarm, per direction.
    """

    def __init__(
        self,
        n_intents: int,
        window: int = 2000,
        js_min: float = 0.1,
        js_ratio: float = 3.0,
        history: int = 20,
        warmup_windows: int = 5,
        cooldown_windows: int = 2,
        adwin_delta: float = 0.002,
        ph_threshold: float = 20.0,
        ph_delta: float = 0.02,
        top_intents: int = 3,
    ):
        if n_intents < 1:
            raise ValueError(f"n_intents must be >= 1, got {n_intents}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        if not 0 <= js_min <= 1:
            raise ValueError(f"js_min must be in [0, 1], got {js_min}")
        if js_ratio < 1:
            raise ValueError(f"js_ratio must be >= 1, got {js_ratio}")
        self.n_intents = n_intents
        self.window = window
        self.js_min = js_min
        self.js_ratio = js_ratio
        self.history = history
        self.warmup_windows = warmup_windows
        self.cooldown_windows = cooldown_windows
        self.adwin_delta = adwin_delta
        self.ph_threshold = ph_threshold
        self.ph_delta = ph_delta
        self.top_intents = top_intents
        self._reset()

    def __setstate__(self, state: dict) -> None:
        # Monitors pickled by earlier versions lack the newer attributes.
        self.__dict__.update(state)
        self.__dict__.setdefault("position", None)
        self.__dict__.setdefault("_window_start", 0)
        self.__dict__.setdefault("_armed", True)
        self.__dict__.setdefault("ph_delta", 0.02)

    def _reset(self) -> None:
        self._current = np.zeros(self.n_intents, dtype=np.int64)
        self._filled = 0
        self._window_start = 0
        self._previous: np.ndarray | None = None
        self._published: np.ndarray | None = None
        self._published_centers: np.ndarray | None = None
        self._js_history: deque[float] = deque(maxlen=self.history)
        self._quiet = 0
        self.n_windows = 0
        self.n_events = 0
        self.position: int | None = None  # events learned, kept by the caller
        self._armed = self.warmup_windows == 0
        self.alarms: list[DriftAlarm] = []
        self.n_alarms = 0
        self.last_report: WindowReport | None = None
        self._hits = ADWIN(delta=self.adwin_delta)
        self._loss = PageHinkley(
            threshold=self.ph_threshold, delta=self.ph_delta, mode="both"
        )
        self._loss_mean: float | None = None
        self.centers: np.ndarray | None = None
        self.model_version: str | None = None
        self.live: dict[str, float] = {}
        self.item_names: dict[int, list[str]] = {}

    # -- learning from the stream ------------------------------------------------

    def update_assignments(self, intents: Iterable[int]) -> list[WindowReport]:
        """Count intent assignments; returns the windows this call closed."""
        closed = []
        for k in intents:
            self._current[int(k)] += 1
            self._filled += 1
            self.n_events += 1
            if self._filled == self.window:
                closed.append(self._close_window())
        return closed

    @property
    def armed(self) -> bool:
        """Whether the warm-up is over and alarms can fire."""
        return self._armed

    def _where(self) -> int:
        return self.n_events if self.position is None else self.position

    def update_hits(self, hits: Iterable[float]) -> list[DriftAlarm]:
        """Prequential hits (1.0 hit, 0.0 miss); returns quality alarms."""
        new = []
        if not self._armed:
            return new
        for h in hits:
            before = self._hits.estimation
            self._hits.update(float(h))
            # Note: ADWIN.n_detections reads 1 only on the detecting update,
            # so alarms are counted here, not read back from it.
            if self._hits.drift_detected:
                after = self._hits.estimation
                new.append(
                    self._alarm(
                        "quality",
                        "rise" if after > before else "fall",
                        value=after,
                        before=before,
                        after=after,
                    )
                )
        return new

    def update_loss(self, loss: float) -> list[DriftAlarm]:
        """One step's loss; returns loss alarms (non-finite values are ignored)."""
        if not math.isfinite(loss) or not self._armed:
            return []
        before = self._loss_mean
        self._loss_mean = loss if before is None else 0.9 * before + 0.1 * loss
        self._loss.update(loss)
        if not self._loss.drift_detected:
            return []
        direction = "rise" if before is None or loss > before else "fall"
        return [self._alarm("loss", direction, value=loss, before=before, after=loss)]

    def update_centers(self, centers) -> None:
        """The model's current centers (K, d), for movement since the last publish."""
        self.centers = np.asarray(centers, dtype=np.float64)

    def mark_published(self, version: str) -> None:
        """A model was published: it becomes the reference for divergence and movement."""
        self.model_version = version
        if self.last_report is not None:
            self._published = np.asarray(self.last_report.counts)
        if self.centers is not None:
            self._published_centers = self.centers.copy()

    # -- measures ----------------------------------------------------------------

    def center_movement(self) -> tuple[float, float] | None:
        """Mean and max distance each center moved since the last publish."""
        if self.centers is None or self._published_centers is None:
            return None
        if self.centers.shape != self._published_centers.shape:
            return None
        moved = np.linalg.norm(self.centers - self._published_centers, axis=1)
        return float(moved.mean()), float(moved.max())

    @property
    def filled(self) -> int:
        """Assignments counted in the window being filled."""
        return self._filled

    def shares(self) -> np.ndarray:
        """The last closed window's share of each intent."""
        if self.last_report is None:
            return np.zeros(self.n_intents)
        counts = np.asarray(self.last_report.counts, dtype=np.float64)
        return counts / max(1.0, counts.sum())

    def _close_window(self) -> WindowReport:
        counts = self._current
        js_prev = (
            None if self._previous is None else js_divergence(self._previous, counts)
        )
        js_pub = (
            None if self._published is None else js_divergence(self._published, counts)
        )
        movement = self.center_movement()
        where = self._where()
        report = WindowReport(
            window=self.n_windows,
            events_from=self._window_start,
            events_to=where,
            created_at=datetime.now(UTC),
            model_version=self.model_version,
            counts=counts.tolist(),
            js_prev=js_prev,
            js_published=js_pub,
            empty_intents=int((counts == 0).sum()),
            center_shift_mean=None if movement is None else movement[0],
            center_shift_max=None if movement is None else movement[1],
            live=dict(self.live),
        )
        if js_prev is not None:
            self._check_mix(js_prev, self._previous, counts)
            self._js_history.append(js_prev)
        self._previous = counts.copy()
        self._current = np.zeros(self.n_intents, dtype=np.int64)
        self._filled = 0
        self._window_start = where
        self.n_windows += 1
        self.last_report = report
        if not self._armed and self.n_windows >= self.warmup_windows:
            self._armed = True
            self._hits = ADWIN(delta=self.adwin_delta)
            self._loss = PageHinkley(
                threshold=self.ph_threshold, delta=self.ph_delta, mode="both"
            )
            self._loss_mean = None
        return report

    def _check_mix(self, js: float, before: np.ndarray, after: np.ndarray) -> None:
        if self._quiet > 0:
            self._quiet -= 1
            return
        if not self._armed or js < self.js_min:
            return
        floor = statistics.median(self._js_history) if self._js_history else 0.0
        if js < self.js_ratio * floor:
            return
        p = before / max(1, before.sum())
        q = after / max(1, after.sum())
        delta = q - p
        order = np.argsort(delta)
        rising = [
            self._share(k, p, q)
            for k in order[::-1][: self.top_intents]
            if delta[k] > 0
        ]
        falling = [
            self._share(k, p, q) for k in order[: self.top_intents] if delta[k] < 0
        ]
        self._alarm(
            "intent_mix",
            "rise",
            value=js,
            before=floor,
            after=js,
            rising=rising,
            falling=falling,
        )
        self._quiet = self.cooldown_windows

    def _share(self, k: int, p, q) -> IntentShare:
        return IntentShare(
            intent=int(k),
            share_before=round(float(p[k]), 5),
            share_after=round(float(q[k]), 5),
            top_items=self.item_names.get(int(k), []),
        )

    def _alarm(self, detector: str, direction: str, **fields) -> DriftAlarm:
        alarm = DriftAlarm(
            detector=detector,
            direction=direction,
            at_event=self._where(),
            created_at=datetime.now(UTC),
            model_version=self.model_version,
            **fields,
        )
        self.alarms.append(alarm)
        if len(self.alarms) > 1000:  # bounded: keep the newest
            del self.alarms[:100]
        self.n_alarms += 1
        return alarm
