"""Replay a data set as keyed click events, in time order, at a chosen pace.

Any file the offline loaders read (:func:`elcrec.data.read_interactions`:
sequence files, RecBole ``.inter``, CSV/TSV/JSON lines) or the synthetic
generator (:class:`elcrec.synthetic.SyntheticClickstream`) becomes a stream
of :class:`~elcrec.stream.events.ClickEvent` records keyed by user id.

Event ids are ``<id_prefix>-<n>`` (n is the position in the replay), so
replaying the same data twice produces the same ids and the ingest consumer's
de-duplication drops the second copy within its window; give another prefix
to replay the data as new events.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

from elcrec.stream.events import EventType

logger = logging.getLogger(__name__)

# Times below this many seconds (about 1973-03) are taken for positions in a
# sequence file, not epoch times, and are shifted to start at base_time_ms.
_RELATIVE_BELOW_S = 1e8
DEFAULT_BASE_TIME_MS = 1_577_836_800_000  # 2020-01-01T00:00:00Z


@dataclass(frozen=True, slots=True)
class ReplayOptions:
    """How to replay.

    Attributes:
        rate: events per second at most; None: no limit.
        speedup: keep the data's time gaps, divided by this; None: ignore them.
        limit: stop after this many events; None: all.
        event_type: the event type of every event.
        id_prefix: event ids are ``<id_prefix>-<n>``.
        stamp_now: use the wall clock at send time as the event time instead
            of the data's time (live demos, latency measurements).
        base_time_ms: epoch ms given to relative times (sequence positions).
    """

    rate: float | None = None
    speedup: float | None = None
    limit: int | None = None
    event_type: EventType = EventType.CLICK
    id_prefix: str = "replay"
    stamp_now: bool = False
    base_time_ms: int = DEFAULT_BASE_TIME_MS

    def __post_init__(self):
        if self.rate is not None and self.rate <= 0:
            raise ValueError(f"rate must be positive, got {self.rate}")
        if self.speedup is not None and self.speedup <= 0:
            raise ValueError(f"speedup must be positive, got {self.speedup}")
        if self.limit is not None and self.limit < 0:
            raise ValueError(f"limit must be 0 or more, got {self.limit}")


@dataclass(slots=True)
class ReplayStats:
    sent: int = 0
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.sent / self.seconds if self.seconds > 0 else 0.0


def event_times_ms(interactions: list, base_time_ms: int) -> list[int]:
    """Event times in epoch ms; relative times are shifted to ``base_time_ms``."""
    if not interactions:
        return []
    if max(x.ts for x in interactions) < _RELATIVE_BELOW_S:
        return [base_time_ms + int(round(x.ts * 1000)) for x in interactions]
    return [int(round(x.ts * 1000)) for x in interactions]


def iter_events(interactions: list, options: ReplayOptions) -> Iterator[dict]:
    """The wire events of ``interactions`` (already in time order)."""
    chosen = (
        interactions[: options.limit] if options.limit is not None else interactions
    )
    times = event_times_ms(chosen, options.base_time_ms)
    kind = str(options.event_type)
    for n, (x, ts) in enumerate(zip(chosen, times, strict=True)):
        yield {
            "event_id": f"{options.id_prefix}-{n}",
            "user_id": x.user,
            "item_id": x.item,
            "event_type": kind,
            "ts": ts,
        }


def replay(
    bootstrap_servers: str,
    topic: str,
    interactions: list,
    options: ReplayOptions = ReplayOptions(),
    progress_every_s: float = 10.0,
    client_options: dict | None = None,
) -> ReplayStats:
    """Send ``interactions`` to ``topic`` as keyed click events.

    ``client_options`` are extra kafka-python arguments (TLS, SASL: see
    :func:`elcrec.stream.kafka_options.client_options`).

    Returns:
        How many events were sent, and in how many seconds.
    """
    from kafka import KafkaProducer

    producer = KafkaProducer(
        bootstrap_servers=bootstrap_servers,
        client_id="elcrec-replay",
        linger_ms=20,
        batch_size=256 * 1024,
        **(client_options or {}),
    )
    stats = ReplayStats()
    t0 = time.monotonic()
    logged = t0
    first_ts = None
    try:
        for n, event in enumerate(iter_events(interactions, options)):
            # Pace: event n is due when both the rate and the speed-up allow.
            due = 0.0
            if options.rate is not None:
                due = n / options.rate
            if options.speedup is not None:
                if first_ts is None:
                    first_ts = event["ts"]
                due = max(due, (event["ts"] - first_ts) / 1000 / options.speedup)
            ahead = t0 + due - time.monotonic()
            if ahead > 0.001:
                time.sleep(ahead)
            if options.stamp_now:
                event["ts"] = int(time.time() * 1000)
            producer.send(
                topic,
                key=event["user_id"].encode(),
                value=json.dumps(event, separators=(",", ":")).encode(),
            )
            stats.sent += 1
            now = time.monotonic()
            if now - logged >= progress_every_s:
                logged = now
                logger.info(
                    "Replay progress topic=%s sent=%d rate=%.0f/s",
                    topic,
                    stats.sent,
                    stats.sent / (now - t0),
                )
        producer.flush()
    finally:
        producer.close(timeout=10)
        stats.seconds = time.monotonic() - t0
    logger.info(
        "Replay finished topic=%s sent=%d seconds=%.1f rate=%.0f/s",
        topic,
        stats.sent,
        stats.seconds,
        stats.rate,
    )
    return stats


def load_interactions(
    data: str,
    fmt: str = "auto",
    *,
    user_col: str | None = None,
    item_col: str | None = None,
    time_col: str | None = None,
    synthetic: dict | None = None,
) -> list:
    """Interactions of a file, or of the synthetic generator when ``data`` is
    ``"synthetic"`` (``synthetic`` holds its keyword arguments)."""
    if data == "synthetic":
        from elcrec.synthetic import SyntheticClickstream

        return SyntheticClickstream(**(synthetic or {})).interactions()
    from elcrec.data import read_interactions

    return read_interactions(
        data, fmt, user_col=user_col, item_col=item_col, time_col=time_col
    )


def count_users(interactions: Iterable) -> int:
    return len({x.user for x in interactions})
