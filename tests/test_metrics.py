"""Full-ranking metrics against a brute-force reference."""

from __future__ import annotations

import math

import pytest
import torch

from elcrec.metrics import RankAccumulator, rank_metrics, target_ranks


def brute_force_ranks(scores, targets, seen):
    """Sort each user's items (stable, descending), seen and padding last."""
    ranks = []
    for s, t, seen_row in zip(
        scores.tolist(), targets.tolist(), seen.tolist(), strict=True
    ):
        excluded = {0} | {i for i in seen_row if i}
        keyed = [(-math.inf if i in excluded else v, i) for i, v in enumerate(s)]
        order = sorted(keyed, key=lambda p: (-p[0], p[1]))  # ties: smaller index first
        ranks.append([i for _, i in order].index(t))
    return torch.tensor(ranks)


@pytest.mark.parametrize("item_chunk", [7, 64, 16384])
@pytest.mark.parametrize("integer_scores", [False, True])  # True: many ties
def test_ranks_match_brute_force(item_chunk, integer_scores):
    g = torch.Generator().manual_seed(0)
    B, N, D = 40, 50, 3
    q = torch.randn(B, D, generator=g)
    items = torch.randn(N + 1, D, generator=g)
    if integer_scores:
        q, items = q.round(), items.round()
    targets = torch.randint(1, N + 1, (B,), generator=g)
    seen = torch.randint(0, N + 1, (B, 6), generator=g)  # 0s are padding
    seen[:5, 0] = targets[:5]  # some targets were seen already
    ranks = target_ranks(q, items, targets, seen, item_chunk=item_chunk)
    expected = brute_force_ranks(q @ items.T, targets, seen)
    # a seen target ranks after all unseen items; the reference puts it among
    # the excluded ones, so compare only "not in the top N - |excluded|".
    assert torch.equal(ranks[5:], expected[5:])
    for b in range(5):
        n_unseen = N - len({i for i in seen[b].tolist() if i})
        assert ranks[b] >= n_unseen


def test_seen_items_and_padding_are_never_ranked():
    items = torch.tensor([[100.0], [3.0], [2.0], [1.0]])  # padding row would win
    q = torch.ones(1, 1)
    # item 1 is seen, so target 2 is first, then 3
    assert target_ranks(q, items, torch.tensor([2]), torch.tensor([[1, 0]])).item() == 0
    assert target_ranks(q, items, torch.tensor([3]), torch.tensor([[1, 0]])).item() == 1
    assert target_ranks(q, items, torch.tensor([3]), None).item() == 2


def test_hr_and_ndcg_by_hand():
    m = rank_metrics(torch.tensor([0, 1, 7, 30]), ks=(5, 10))
    assert m["hr@5"] == pytest.approx(2 / 4)
    assert m["hr@10"] == pytest.approx(3 / 4)
    assert m["ndcg@5"] == pytest.approx((1 + 1 / math.log2(3)) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3) + 1 / math.log2(9)) / 4)


def test_accumulator_concatenates_batches():
    acc = RankAccumulator(ks=(1,))
    acc.update(torch.tensor([0, 3]))
    acc.update(torch.tensor([0]))
    assert acc.n == 3
    assert acc.result["hr@1"] == pytest.approx(2 / 3)
