"""The ELCRec model: encoder masking, losses on hand-computable inputs, centers."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from elcrec.model import (
    ELCRec,
    ELCRecConfig,
    info_nce,
    kmeans,
    sample_negatives,
)


def make_model(**overrides) -> ELCRec:
    torch.manual_seed(0)
    cfg = dict(n_items=30, block_size=12, n_embd=16, n_head=2, n_layer=2, n_intents=4)
    return ELCRec(ELCRecConfig(**{**cfg, **overrides}))


def random_batch(B: int, T: int, n_items: int, seed: int = 0, min_len: int = 0):
    g = torch.Generator().manual_seed(seed)
    seqs = torch.randint(1, n_items + 1, (B, T), generator=g)
    lens = torch.randint(min_len, T + 1, (B,), generator=g)
    return torch.where(torch.arange(T) >= T - lens[:, None], seqs, 0)


def dense_encode(model: ELCRec, seqs: torch.Tensor) -> torch.Tensor:
    """Reference encoder: full (B, T) layout, explicit masks, no packing."""
    B, T = seqs.shape
    bs = model.config.block_size
    pos = torch.arange(bs - T, bs)
    x = model.ln_emb(model.tok_emb(seqs) + model.pos_emb(pos))
    real = seqs > 0
    causal = torch.ones(T, T, dtype=torch.bool).tril()
    # real queries see real keys <= t; padding queries see only themselves
    mask = (causal & real[:, None, :] & real[:, :, None]) | torch.eye(
        T, dtype=torch.bool
    )
    for block in model.blocks:
        a = block.attn
        C = x.shape[-1]
        nh, hs = a.n_head, C // a.n_head
        q, k, v = a.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(B, T, nh, hs).transpose(1, 2) for t in (q, k, v))
        att = (q @ k.transpose(-1, -2)) / math.sqrt(hs)
        att = att.masked_fill(~mask[:, None], float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, C)
        x = block.ln_1(x + a.c_proj(y))
        x = block.ln_2(x + block.mlp(x))
    return x


# --- config -------------------------------------------------------------------


def test_config_defaults_are_the_paper_settings():
    cfg = ELCRecConfig()
    assert (cfg.n_embd, cfg.n_head, cfg.block_size) == (64, 2, 50)
    assert (cfg.dropout, cfg.attn_dropout, cfg.init_std) == (0.5, 0.5, 0.02)
    assert (cfg.seqcl_weight, cfg.intentcl_weight, cfg.temperature) == (0.1, 0.1, 1.0)
    assert (cfg.crop_ratio, cfg.mask_ratio, cfg.reorder_ratio) == (0.2, 0.7, 0.2)
    beauty = ELCRecConfig.preset("beauty")
    assert (beauty.n_layer, beauty.n_intents, beauty.clu_weight) == (1, 256, 10.0)
    assert ELCRecConfig.preset("sports").n_intents == 512
    assert ELCRecConfig.preset("toys").n_layer == 3
    assert ELCRecConfig.preset("yelp").clu_weight == 0.1


def test_config_round_trips_through_dict():
    cfg = ELCRecConfig.preset("toys", n_items=77, pooling="real")
    assert ELCRecConfig.from_dict(cfg.to_dict()) == cfg


@pytest.mark.parametrize(
    "field, value",
    [
        ("n_embd", 0),
        ("n_embd", 63),  # not a multiple of n_head=2
        ("dropout", 1.0),
        ("pooling", "max"),
        ("prototype", "add"),
        ("clu_weight", -1.0),
        ("mask_ratio", 1.5),
    ],
)
def test_config_rejects_bad_values_naming_the_field(field, value):
    with pytest.raises(ValueError, match=f"ELCRecConfig.{field} "):
        ELCRecConfig(**{field: value})


def test_config_rejects_unknown_fields_and_presets():
    with pytest.raises(ValueError, match="no field"):
        ELCRecConfig.from_dict({"n_embed": 4})
    with pytest.raises(ValueError, match="unknown preset"):
        ELCRecConfig.preset("movies")


def test_sasrec_config_switches_every_intent_loss_off():
    cfg = ELCRecConfig.preset("beauty").sasrec()
    assert not cfg.uses_intents
    assert cfg.n_layer == 1


# --- encoder masking ------------------------------------------------------------


def test_packed_encoder_equals_dense_reference():
    model = make_model().eval()
    seqs = random_batch(37, 12, 30)
    seqs[3, 8] = 0  # an interior hole, as the mask augmentation makes
    with torch.no_grad():
        torch.testing.assert_close(model.encode(seqs), dense_encode(model, seqs))
        # shorter than block_size: positions stay right-aligned
        torch.testing.assert_close(
            model.encode(seqs[:, 4:]), dense_encode(model, seqs[:, 4:])
        )


def test_padding_is_never_attended_to():
    model = make_model().eval()
    seqs = random_batch(16, 12, 30, min_len=1)
    real = seqs > 0
    with torch.no_grad():
        before = model.encode(seqs)
        model.tok_emb.weight[0] = torch.randn(16) * 10  # padding embedding
        after = model.encode(seqs)
    torch.testing.assert_close(before[real], after[real])
    # and more left padding changes nothing at real positions
    with torch.no_grad():
        h_short = model.encode(seqs[:, 6:])
        h_full = model.encode(seqs)
    fits = (seqs[:, :6] == 0).all(dim=1)  # rows whose items fit in the last 6
    torch.testing.assert_close(h_short[fits, -1], h_full[fits, -1])


def test_encoder_is_causal():
    model = make_model().eval()
    seqs = random_batch(8, 12, 30, min_len=12)
    changed = seqs.clone()
    changed[:, 9:] = (changed[:, 9:] % 30) + 1  # alter the future of position 8
    with torch.no_grad():
        a, b = model.encode(seqs), model.encode(changed)
    torch.testing.assert_close(a[:, :9], b[:, :9])
    assert not torch.allclose(a[:, 9:], b[:, 9:])


def test_score_last_never_scores_padding():
    model = make_model().eval()
    with torch.no_grad():
        model.tok_emb.weight[0] = 100.0  # would win every dot product
    seqs = random_batch(5, 12, 30, min_len=1)
    scores = model.score_last(seqs)
    assert scores.shape == (5, 31)
    assert torch.isneginf(scores[:, 0]).all()
    assert (scores.argmax(dim=1) > 0).all()
    h = model.encode(seqs)[:, -1]
    torch.testing.assert_close(scores[:, 1:], h @ model.tok_emb.weight[1:31].T)


# --- losses on hand-computable inputs -------------------------------------------


def test_clustering_loss_by_hand():
    model = make_model(n_embd=2, n_head=1, n_intents=2)
    with torch.no_grad():
        model.centers.copy_(torch.tensor([[1.0, 0.0], [-1.0, 0.0]]))
    z = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # pull: ||z1-c1||^2=0, ||z1-c2||^2=4, ||z2-c1||^2=2, ||z2-c2||^2=2 -> mean 2
    # push: the one distinct pair ||c1-c2||^2 = 4
    assert model.clustering_loss(z).item() == pytest.approx(2.0 - 4.0)


def test_clustering_loss_equals_the_pairwise_definition():
    model = make_model(n_intents=7)
    z = F.normalize(torch.randn(9, 16), dim=1)
    c = model.centers.detach()
    pull = torch.cdist(z, c).pow(2).mean()
    d = torch.cdist(c, c).pow(2)
    push = d[~torch.eye(7, dtype=torch.bool)].mean()
    assert model.clustering_loss(z).item() == pytest.approx(
        (pull - push).item(), abs=1e-5
    )


def test_info_nce_by_hand():
    a = torch.tensor([[1.0, 0.0], [0.0, 1.0]])
    # each row: positive similarity 1, two negatives with similarity 0
    expected = math.log(math.e + 2) - 1
    assert info_nce(a, a.clone()).item() == pytest.approx(expected, rel=1e-6)
    # temperature divides the similarities
    expected_t = math.log(math.exp(2) + 2) - 2
    assert info_nce(a, a.clone(), temperature=0.5).item() == pytest.approx(
        expected_t, rel=1e-6
    )


def test_rec_loss_by_hand():
    model = make_model(n_items=2, n_embd=2, n_head=1)
    with torch.no_grad():
        model.tok_emb.weight.copy_(torch.tensor([[0, 0], [1, 0], [0, 1], [5, 5.0]]))
    h = torch.tensor([[[9.0, 9.0], [2.0, 0.0], [0.0, 3.0]]])  # (1, 3, 2)
    seqs = torch.tensor([[0, 1, 2]])
    targets = torch.tensor([[0, 1, 2]])  # position 0 has no target
    negatives = torch.tensor([[1, 2, 1]])
    loss = model._rec_loss(h, seqs, targets, negatives, None)
    # pos 1: h.e1 = 2, h.e2 = 0; pos 2: h.e2 = 3, h.e1 = 0
    sp = lambda x: math.log1p(math.exp(-x))  # -log sigmoid(x)  # noqa: E731
    expected = ((sp(2) + sp(-0)) + (sp(3) + sp(-0))) / 2
    assert loss.item() == pytest.approx(expected, rel=1e-6)


def test_total_is_the_weighted_sum_and_sasrec_is_rec_only():
    model = make_model(clu_weight=10.0, dropout=0.0, attn_dropout=0.0)
    seqs = random_batch(8, 12, 30, min_len=3)
    targets = torch.roll(seqs, -1, dims=1).clone()
    targets[:, -1] = 0
    g = torch.Generator().manual_seed(1)
    out = model.losses(seqs, targets, generator=g)
    assert set(out) >= {"rec", "seqcl", "intentcl", "clu", "total"}
    expected = out["rec"] + 0.1 * out["seqcl"] + 0.1 * out["intentcl"] + 10 * out["clu"]
    assert out["total"].item() == pytest.approx(expected.item(), rel=1e-6)

    plain = ELCRec(model.config.sasrec())
    out = plain.losses(seqs, targets, generator=g)
    assert out["total"].item() == out["rec"].item()
    assert out["clu"].item() == out["seqcl"].item() == out["intentcl"].item() == 0


def test_losses_reach_every_parameter_and_centers_get_gradient():
    model = make_model(dropout=0.0, attn_dropout=0.0)
    seqs = random_batch(8, 12, 30, min_len=3)
    targets = torch.roll(seqs, -1, dims=1).clone()
    targets[:, -1] = 0
    out = model.losses(seqs, targets, generator=torch.Generator().manual_seed(0))
    out["total"].backward()
    assert model.centers.grad is not None and model.centers.grad.abs().sum() > 0
    assert bool(model.centers_ready)  # seeded from the batch on first use


def test_full_cross_entropy_variant():
    model = make_model(rec_loss="ce", dropout=0.0, attn_dropout=0.0).eval()
    seqs = random_batch(4, 12, 30, min_len=2)
    targets = torch.roll(seqs, -1, dims=1).clone()
    targets[:, -1] = 0
    out = model.losses(seqs, targets)
    h = model.encode(seqs)
    real = targets > 0
    logits = h[real] @ model.tok_emb.weight[1:31].T
    expected = F.cross_entropy(logits, targets[real] - 1)
    assert out["rec"].item() == pytest.approx(expected.item(), rel=1e-5)


# --- sampling and augmentation ---------------------------------------------------


def test_negatives_avoid_the_users_items():
    seen = random_batch(64, 12, 20, min_len=5)
    neg = sample_negatives(seen, T=12, n_items=20, generator=torch.Generator())
    assert neg.shape == (64, 12)
    assert ((neg >= 1) & (neg <= 20)).all()
    assert not (neg.unsqueeze(2) == seen.unsqueeze(1)).any()


def test_augmentations_are_crop_mask_or_reorder_of_each_row():
    model = make_model(block_size=20)
    seqs = random_batch(200, 20, 1000, min_len=1, seed=3)
    views = model.augment(seqs, generator=torch.Generator().manual_seed(0))
    kinds = {"crop": 0, "mask": 0, "reorder": 0}
    for s, v in zip(seqs.tolist(), views.tolist(), strict=True):
        items = [i for i in s if i]
        n = len(items)
        got = [i for i in v if i]
        first = v.index(got[0]) if got else len(v)
        L = max(1, int(0.2 * n))
        crop_ok = (
            len(got) == L
            and any(items[j : j + L] == got for j in range(n - L + 1))
            and all(i == 0 for i in v[:first])
        )
        mask_ok = len(got) == n - int(0.7 * n) and all(
            a in (b, 0) for a, b in zip(v, s, strict=True)
        )
        reorder_ok = (
            sorted(got) == sorted(items)
            and len(got) == n
            and (sum(a != b for a, b in zip(v, s, strict=True)) <= int(0.2 * n))
        )
        assert crop_ok or mask_ok or reorder_ok, (s, v)
        if n >= 10:  # long enough to tell the operators apart
            kinds["crop" if crop_ok else "mask" if mask_ok else "reorder"] += 1
    assert all(count > 10 for count in kinds.values()), kinds


def test_augmentation_is_deterministic_under_a_seed():
    model = make_model()
    seqs = random_batch(32, 12, 30)
    a = model.augment(seqs, generator=torch.Generator().manual_seed(5))
    b = model.augment(seqs, generator=torch.Generator().manual_seed(5))
    assert torch.equal(a, b)


# --- centers and vocabulary --------------------------------------------------------


def test_kmeans_finds_separated_clusters():
    g = torch.Generator().manual_seed(0)
    means = torch.eye(4) * 5
    x = means.repeat_interleave(50, 0) + 0.1 * torch.randn(200, 4, generator=g)
    centers = kmeans(x, 4, generator=g)
    # every true mean has a center within 0.2
    d = torch.cdist(means, centers)
    assert (d.min(dim=1).values < 0.2).all()


def test_init_centers_with_fewer_vectors_than_centers():
    model = make_model(n_intents=10)
    z = F.normalize(torch.randn(3, 16), dim=1)
    model.init_centers(z, generator=torch.Generator().manual_seed(0))
    c = model.centers.detach()
    torch.testing.assert_close(c.norm(dim=1), torch.ones(10))
    # each vector is a center
    assert (torch.cdist(z, c).min(dim=1).values < 1e-5).all()
    assert bool(model.centers_ready)
    k, w = model.assign(random_batch(6, 12, 30, min_len=1))
    assert k.shape == w.shape == (6,)
    assert ((k >= 0) & (k < 10)).all() and (w.abs() <= 1 + 1e-6).all()


def test_assign_picks_the_nearest_center():
    model = make_model(n_intents=5).eval()
    seqs = random_batch(20, 12, 30, min_len=1)
    k, w = model.assign(seqs)
    z = model.intent_vectors(seqs).detach()
    expected = torch.cdist(z, model.centers.detach()).argmin(dim=1)
    assert torch.equal(k, expected)
    torch.testing.assert_close(w, (z * model.centers.detach()[k]).sum(1))


def test_renormalize_centers():
    model = make_model()
    with torch.no_grad():
        model.centers.mul_(3.0)
    model.renormalize_centers()
    torch.testing.assert_close(model.centers.norm(dim=1), torch.ones(4))


@pytest.mark.parametrize("pooling", ["all", "real"])
def test_pooling_options(pooling):
    model = make_model(pooling=pooling).eval()
    seqs = random_batch(6, 12, 30, min_len=1)
    h = model.encode(seqs)
    if pooling == "all":
        expected = h.mean(1)
    else:
        real = (seqs > 0).float().unsqueeze(-1)
        expected = (h * real).sum(1) / real.sum(1)
    torch.testing.assert_close(
        model.intent_vectors(seqs, h), F.normalize(expected, dim=1)
    )


def test_grow_items_keeps_existing_rows():
    model = make_model(n_items=30)
    old = model.tok_emb.weight.detach().clone()
    model.grow_items(40)
    w = model.tok_emb.weight.detach()
    assert w.shape == (42, 16) and model.n_items == 40 and model.config.n_items == 40
    torch.testing.assert_close(w[:31], old[:31])
    torch.testing.assert_close(w[41], old[31])  # the spare id moved to the end
    assert model.score_last(random_batch(2, 12, 30, min_len=1)).shape == (2, 41)
    with pytest.raises(ValueError, match="shrink"):
        model.grow_items(10)


def test_the_popularity_prior_adds_its_decayed_counts_to_scores_and_grows():
    model = make_model(pop_prior=True, pop_half_life=2.0).eval()
    seqs = random_batch(3, 12, 30, min_len=1)
    plain = model.score_last(seqs)  # no counts yet: log(1 + 0) = 0
    model.observe_items(torch.tensor([5, 5]))  # two events of item 5
    model.observe_items(torch.tensor([7, 5]))  # two more: older counts halve
    torch.testing.assert_close(model.pop_counts[5], torch.tensor(2.0))  # 2 / 2 + 1
    torch.testing.assert_close(model.pop_counts[7], torch.tensor(1.0))
    with torch.no_grad():
        model.pop_weight.fill_(0.5)
    scores = model.score_last(seqs)
    expected = plain.clone()
    expected[:, 5] += 0.5 * math.log(3.0)
    expected[:, 7] += 0.5 * math.log(2.0)
    torch.testing.assert_close(scores[:, 1:], expected[:, 1:])
    # The weight learns through the rec loss; counts survive a grown table.
    inputs = random_batch(4, 12, 30, min_len=2)
    model.train()
    model.losses(inputs, inputs.roll(-1, dims=1))["rec"].backward()
    assert model.pop_weight.grad is not None and model.pop_weight.grad != 0
    model.grow_items(40)
    assert model.pop_counts.shape == (42,) and model.pop_counts[5] == 2.0
    assert model.pop_counts[31:].sum() == 0


def test_the_transition_prior_counts_pairs_in_bounded_rows_and_scores_them():
    model = make_model(trans_prior=True, trans_slots=2).eval()
    model.observe_transitions([(3, 4), (3, 4), (3, 9), (5, 6)])
    assert model.pair_counts(
        torch.tensor([3, 3, 3, 5]), torch.tensor([4, 9, 6, 6])
    ).tolist() == [
        2.0,
        1.0,
        0.0,
        1.0,
    ]
    # Row 3 is full: a newcomer takes the least counted slot, its count plus one.
    model.observe_transitions([(3, 8)])
    assert sorted(model.trans_next[3].tolist()) == [4, 8]
    assert model.pair_counts(torch.tensor([3]), torch.tensor([8])).item() == 2.0
    with torch.no_grad():
        model.trans_weight.fill_(0.5)
    seqs = torch.zeros(2, 12, dtype=torch.long)
    seqs[0, -2:] = torch.tensor([7, 3])  # last item 3
    seqs[1, -1] = 5  # last item 5
    scores = model.score_last(seqs)
    with torch.no_grad():
        model.trans_weight.zero_()
    plain = model.score_last(seqs)
    bonus = (scores - plain)[:, 1:]
    expected = torch.zeros_like(bonus)
    expected[0, 3] = expected[0, 7] = 0.5 * math.log(3.0)  # items 4 and 8
    expected[1, 5] = 0.5 * math.log(2.0)  # item 6
    torch.testing.assert_close(bonus, expected)


@pytest.mark.parametrize("rec_loss", ["bce", "ce"])
def test_the_transition_prior_leaves_the_trained_pair_out_and_learns_its_weight(
    rec_loss,
):
    model = make_model(
        trans_prior=True, rec_loss=rec_loss, dropout=0.0, attn_dropout=0.0
    )
    seqs = torch.zeros(1, 12, dtype=torch.long)
    seqs[0, -1] = 3
    targets = torch.zeros(1, 12, dtype=torch.long)
    targets[0, -1] = 4
    negatives = torch.full((1, 12), 9)

    def rec():
        return model.losses(seqs, targets, negatives=negatives)["rec"]

    rec()  # seeds the centers
    model.observe_transitions([(3, 4)])  # the pair trained on, counted once
    torch.manual_seed(0)
    alone = rec()
    model.observe_transitions([(3, 4)])  # another user's 3 -> 4
    torch.manual_seed(0)
    helped = rec()
    assert helped < alone  # only the other user's pair raises the target
    helped.backward()
    assert model.trans_weight.grad is not None and model.trans_weight.grad < 0


def test_the_transition_table_grows_and_forgets_reused_rows():
    model = make_model(trans_prior=True, trans_slots=3)
    model.observe_transitions([(3, 4), (4, 3), (5, 3), (5, 6)])
    model.grow_items(40)
    assert model.trans_next.shape == (42, 3) and model.trans_counts.shape == (42, 3)
    assert model.pair_counts(torch.tensor([3, 5]), torch.tensor([4, 6])).tolist() == [
        1.0,
        1.0,
    ]
    model.forget_counts(torch.tensor([3]))
    # pairs from and to item 3 are gone, others stay
    assert model.pair_counts(
        torch.tensor([3, 4, 5, 5]), torch.tensor([4, 3, 3, 6])
    ).tolist() == [
        0.0,
        0.0,
        0.0,
        1.0,
    ]


def test_the_full_softmax_takes_at_most_ce_max_rows_positions_last_ones_first():
    model = make_model(rec_loss="ce", ce_max_rows=5)
    real = random_batch(4, 12, 30, min_len=3) > 0  # at least 12 real positions
    g = torch.Generator().manual_seed(1)
    b, t = model._softmax_positions(real, g)
    assert len(b) == 5 and real[b, t].all()
    assert set(b[t == 11].tolist()) == {0, 1, 2, 3}  # every window's last one
    assert len(set(zip(b.tolist(), t.tolist(), strict=True))) == 5
    # Without a cap every real position counts; the loss is finite either way.
    assert len(make_model(rec_loss="ce")._softmax_positions(real)[0]) == real.sum()
    seqs = random_batch(4, 12, 30, min_len=3)
    assert torch.isfinite(model.losses(seqs, seqs.roll(-1, dims=1), generator=g)["rec"])
