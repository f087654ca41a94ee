"""Full-ranking metrics: HR@k and NDCG@k with one held-out item per user.

Every item is scored (no sampled negatives). Items the user already had are
set to minus infinity and the padding column 0 never ranks; ties are broken by
the smaller item index first, as a stable sort by descending score would. The
work is vectorised over users and chunked over items, so memory stays
``O(users_per_batch * item_chunk)`` however large the catalogue.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch

KS = (5, 10, 20)


def target_ranks(
    query: torch.Tensor,
    item_vectors: torch.Tensor,
    targets: torch.Tensor,
    seen: torch.Tensor | None = None,
    item_chunk: int = 16384,
) -> torch.Tensor:
    """0-based rank of each target among all items: (B,) long.

    Args:
        query: (B, D) user vectors; the score of item i is ``query @ item_vectors[i]``.
        item_vectors: (N + 1, D), row 0 the padding (never ranked).
        targets: (B,) item index of each user's held-out item, in 1..N.
        seen: (B, S) items to exclude per user, 0-padded; a seen target ranks
            after every unseen item (its score is minus infinity too).
        item_chunk: items scored at once.
    """
    B = query.shape[0]
    n_rows = item_vectors.shape[0]
    dev = query.device
    t_score = (query * item_vectors[targets]).sum(-1)  # (B,)
    if seen is not None:
        target_seen = (seen == targets.unsqueeze(1)).any(dim=1)
        t_score = t_score.masked_fill(target_seen, -math.inf)
    rank = torch.zeros(B, dtype=torch.long, device=dev)

    for start in range(0, n_rows, item_chunk):
        stop = min(start + item_chunk, n_rows)
        width = stop - start
        s = query @ item_vectors[start:stop].T  # (B, width)
        # one spare column receives the -inf of seen items outside this chunk
        s = torch.cat([s, s.new_zeros(B, 1)], dim=1)  # (B, width + 1)
        if start == 0:
            s[:, 0] = -math.inf
        if seen is not None:
            local = seen - start
            local = torch.where((local >= 0) & (local < width), local, width)
            s.scatter_(1, local, -math.inf)
        s = s[:, :width]
        col = torch.arange(start, stop, device=dev)  # (width,)
        ahead = (s > t_score.unsqueeze(1)) | (
            (s == t_score.unsqueeze(1)) & (col < targets.unsqueeze(1))
        )
        ahead &= col != targets.unsqueeze(1)
        rank += ahead.sum(dim=1)
    return rank


def rank_metrics(ranks: torch.Tensor, ks: Iterable[int] = KS) -> dict[str, float]:
    """HR@k and NDCG@k averaged over users, from 0-based target ranks."""
    ranks = ranks.to(torch.float64)
    out: dict[str, float] = {}
    for k in ks:
        hit = ranks < k
        out[f"hr@{k}"] = float(hit.double().mean()) if ranks.numel() else 0.0
        gain = torch.where(hit, 1.0 / torch.log2(ranks + 2.0), 0.0)
        out[f"ndcg@{k}"] = float(gain.mean()) if ranks.numel() else 0.0
    return out


class RankAccumulator:
    """Collects target ranks batch by batch; ``result`` gives the metrics."""

    def __init__(self, ks: Iterable[int] = KS):
        self.ks = tuple(ks)
        self._ranks: list[torch.Tensor] = []

    def update(self, ranks: torch.Tensor) -> None:
        self._ranks.append(ranks.detach().cpu())

    @property
    def n(self) -> int:
        return sum(r.numel() for r in self._ranks)

    @property
    def result(self) -> dict[str, float]:
        ranks = torch.cat(self._ranks) if self._ranks else torch.zeros(0)
        return rank_metrics(ranks, self.ks)
