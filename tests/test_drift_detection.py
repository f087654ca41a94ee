"""Drift alarms on synthetic streams: a planted intent shift is caught within a
bounded delay, and long stationary streams raise none.

The streams go through the trainer loop (the code the trainer process runs):
sequence updates are predicted, learned, and the drift monitor watches the
assignments, the prequential hits and the loss. Each stream is seeded.
"""

from __future__ import annotations

import pytest

from elcrec.consumers.trainer import Incoming, TrainerLoop, load_trainer_settings
from elcrec.stream.events import SequenceUpdate as SequenceRecord
from elcrec.synthetic import SyntheticClickstream

N_USERS, N_ITEMS, N_INTENTS, EVENTS_PER_USER = 600, 1200, 6, 40
N_EVENTS = N_USERS * EVENTS_PER_USER  # 24 000
SHIFT_AT = 16_000
# The trainer learns from bursts of 128 events (an ingest batch); a window is
# 500 assignments, about 550 events here; alarms can fire after 16 windows
# (about 9 000 events, while the model learns the planted intents).
DRIFT = {
    "drift_window": 500,
    "drift_warmup_windows": 16,
    "metrics_window": 1000,
    "drift_log_bytes": 0,
    # The detectors are under test here, not the model: one step per
    # mini-batch and no item bias keep each stream under a minute.
    "steps_per_batch": 1,
    "item_bias": False,
    # The replay sample the delays and false-alarm counts were measured with.
    "replay_per_step": 128,
}
MAX_DELAY = 2_000  # events from the shift to the first alarm


def replay(stream: SyntheticClickstream, tmp_path, batch: int = 128) -> TrainerLoop:
    loop = TrainerLoop(load_trainer_settings(work_dir=tmp_path, **DRIFT))
    seqs: dict[str, list[str]] = {}
    events = stream.interactions()
    for start in range(0, len(events), batch):
        touched: dict[str, int] = {}
        for n, e in enumerate(events[start : start + batch], start=start):
            seqs.setdefault(e.user, []).append(e.item)
            touched[e.user] = n
        loop.handle(
            [
                Incoming(
                    0,
                    n,
                    SequenceRecord(
                        user_id=u,
                        version=len(seqs[u]),
                        items=seqs[u][-200:],
                        ts=[0] * len(seqs[u][-200:]),
                        source_topic="t",
                        source_partition=0,
                        source_offset=n,
                        updated_at=0,
                    ),
                )
                for u, n in sorted(touched.items(), key=lambda kv: kv[1])
            ]
        )
    return loop


def synthetic(seed: int, shift_at: int | None) -> SyntheticClickstream:
    return SyntheticClickstream(
        n_users=N_USERS,
        n_items=N_ITEMS,
        n_intents=N_INTENTS,
        events_per_user=EVENTS_PER_USER,
        seed=seed,
        shift_at=shift_at,
    )


def test_a_planted_intent_shift_raises_an_alarm_soon_after_it(tmp_path):
    loop = replay(synthetic(seed=3, shift_at=SHIFT_AT), tmp_path)
    alarms = loop.drift.alarms
    assert loop.drift.armed
    before = [a for a in alarms if a.at_event < SHIFT_AT]
    after = [a for a in alarms if a.at_event >= SHIFT_AT]
    assert not before, [(a.detector, a.direction, a.at_event) for a in before]
    assert after, "no alarm after the shift"
    first = after[0]
    delay = first.at_event - SHIFT_AT
    print(
        f"shift detected by {first.detector} ({first.direction}) after {delay} events"
    )
    assert delay <= MAX_DELAY, (first.detector, delay)
    # The shift is a fall in quality (the users' new intents are not yet learned).
    assert any(a.detector == "quality" and a.direction == "fall" for a in after)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_no_alarm_on_a_long_stationary_stream(tmp_path, seed):
    loop = replay(synthetic(seed=seed, shift_at=None), tmp_path)
    assert loop.drift.armed and loop.drift.n_windows >= 40
    alarms = [(a.detector, a.direction, a.at_event) for a in loop.drift.alarms]
    print(f"seed {seed}: {len(alarms)} false alarms over {N_EVENTS} events")
    assert alarms == []
