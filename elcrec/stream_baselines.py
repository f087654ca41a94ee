"""Streaming baselines, evaluated exactly like the continual model.

Each is test-then-train over a time-ordered event stream: :meth:`rank_one` gives
the 0-based rank of the true next item among all items seen so far, the user's
own earlier items excluded (a seen target is a miss), then :meth:`learn_one`
counts the event. Items never seen before cannot be ranked (a miss), as for the
model.

- :class:`MostPopular`: all-time click counts.
- :class:`RecentPopular`: click counts decayed exponentially per event
  (``half_life`` events).
- :class:`Transitions`: counts of "item b right after item a" for the user's
  last item, ties broken by popularity.
"""

from __future__ import annotations

import math
from collections import defaultdict

import numpy as np

from elcrec.online import MISS


class _Baseline:
    def __init__(self, capacity: int = 1024):
        self.index: dict[str, int] = {}
        self.counts = np.zeros(capacity, dtype=np.float64)

    def _row(self, item: str) -> int:
        row = self.index.get(item)
        if row is None:
            row = self.index[item] = len(self.index)
            if row >= len(self.counts):
                self.counts = np.concatenate([self.counts, np.zeros_like(self.counts)])
        return row

    def scores(self, history: list[str]) -> np.ndarray:
        raise NotImplementedError

    def rank_one(self, history: list[str], item: str) -> int:
        """Rank of ``item`` after ``history`` (the user's earlier items)."""
        n = len(self.index)
        target = self.index.get(item)
        if target is None or item in history:
            return MISS
        scores = self.scores(history)[:n].copy()
        seen = [self.index[i] for i in history if i in self.index]
        scores[seen] = -np.inf
        # Ties count against the target: an honest rank for count ties.
        return int((scores >= scores[target]).sum()) - 1

    def learn_one(self, history: list[str], item: str) -> None:
        raise NotImplementedError


class MostPopular(_Baseline):
    def scores(self, history):
        return self.counts

    def learn_one(self, history, item):
        row = self._row(item)  # may grow self.counts: look it up first
        self.counts[row] += 1.0


class RecentPopular(_Baseline):
    """Decayed counts; stored scaled by ``g**-t`` so an update costs O(1)."""

    def __init__(self, half_life: float = 2000.0, capacity: int = 1024):
        super().__init__(capacity)
        self.log_growth = math.log(2.0) / half_life
        self.t = 0

    def scores(self, history):
        return self.counts

    def learn_one(self, history, item):
        self.t += 1
        # Rescale now and then to keep the stored values finite.
        if self.t * self.log_growth > 50:
            self.counts *= math.exp(-self.t * self.log_growth)
            self.t = 0
        row = self._row(item)
        self.counts[row] += math.exp(self.t * self.log_growth)


class Transitions(_Baseline):
    def __init__(self, capacity: int = 1024):
        super().__init__(capacity)
        self.next_counts: dict[int, dict[int, float]] = defaultdict(dict)

    def scores(self, history):
        # Popularity breaks ties among items never seen after the last item.
        total = max(1.0, self.counts.sum())
        scores = self.counts / total
        if history and history[-1] in self.index:
            for b, c in self.next_counts[self.index[history[-1]]].items():
                scores[b] += c
        return scores

    def learn_one(self, history, item):
        row = self._row(item)
        self.counts[row] += 1.0
        if history:
            a = self._row(history[-1])
            nxt = self.next_counts[a]
            nxt[row] = nxt.get(row, 0.0) + 1.0
