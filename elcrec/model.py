"""The ELCRec model: a SASRec encoder with learnable intent centers.

ELCRec (End-to-end Learnable Clustering for intent learning in Recommendation,
Liu et al., NeurIPS 2024) trains the intent centers as ordinary parameters of
the network, with a clustering loss that pulls sequence vectors towards the
centers and pushes the centers apart, instead of running k-means between
epochs. That makes the whole objective one differentiable function of a
mini-batch, which is what a streaming trainer needs.

This file imports only torch: the offline trainer and the streaming trainer
both use it as is.

Shapes: B batch, T sequence length (``block_size``), C hidden size
(``n_embd``), K intents (``n_intents``), N items. Item indices run ``1..N``,
``0`` is padding and ``N + 1`` a spare id; sequences are left-padded.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields, replace

import numpy as np
import torch
import torch.nn as nn
from torch.nn import functional as F

# ---------------------------------------------------------------------------
# configuration


@dataclass(frozen=True)
class ELCRecConfig:
    """Model and loss hyperparameters; defaults are the paper's settings.

    Setting ``clu_weight``, ``seqcl_weight`` and ``intentcl_weight`` to zero
    gives plain SASRec (see :meth:`sasrec`).
    """

    n_items: int = 1  # N; the embedding table has N + 2 rows
    block_size: int = 50  # T, longest sequence the encoder sees
    n_embd: int = 64  # C
    n_head: int = 2
    n_layer: int = 2
    dropout: float = 0.5  # on hidden states
    attn_dropout: float = 0.5  # on attention probabilities
    init_std: float = 0.02
    # intents
    n_intents: int = 256  # K
    # "all": mean over all T positions, padding included (the published code);
    # "real": mean over the real positions only. Measured on Beauty validation
    # (bench/README.md): "all" is kept as the default, see the figures there.
    pooling: str = "all"
    prototype: str = "shift"  # "shift" adds the nearest center, "concat" appends it
    # losses
    rec_loss: str = "bce"  # "bce": one sampled negative (the paper); "ce": full softmax
    # "ce" only: at most this many positions of a batch in the softmax (0: all).
    # Every window's last position is kept, the others are sampled: the
    # logits are ce_max_rows x N, bounded whatever the sequences' lengths.
    ce_max_rows: int = 0
    # A learned bias per item added to its score, kept as one more column of
    # the item table (so it grows and is recycled with the item's row). Not in
    # the paper; in a stream it tracks what is popular now.
    item_bias: bool = False
    # Streaming only: add w * log(1 + n_i) to item i's score, n_i the item's
    # count of events decayed with a half-life of pop_half_life events (kept
    # by the online trainer, published with the weights), w learned. Not in
    # the paper; it gives the model what is popular right now at once, which
    # the item bias learns only over many steps.
    pop_prior: bool = False
    pop_half_life: float = 2000.0
    # Streaming only: add w * log(1 + m_ab) to item b's score after a sequence
    # whose last item is a, m_ab the number of times b came right after a in
    # the stream, w learned. Each item keeps its trans_slots most frequent
    # successors (Space-Saving counts: a newcomer takes the least counted slot
    # and its count plus one), so memory is rows * trans_slots whatever the
    # stream. Kept by the online trainer, published with the weights. Not in
    # the paper; it remembers exact item pairs at once, which the encoder
    # learns only over many passes.
    trans_prior: bool = False
    trans_slots: int = 32
    # "all": pull every sequence vector towards every center (the paper);
    # "nearest": towards its own nearest center only (k-means' objective)
    clu_pull: str = "all"
    # similarity of the flattened (T * C) views in the sequence-level contrast:
    # "dot" (the paper's code) or "cosine" (unit vectors; scale-free, so the
    # term cannot dominate the others through the states' norm)
    seqcl_similarity: str = "dot"
    clu_weight: float = 1.0  # lambda of the clustering loss (10 for Beauty)
    seqcl_weight: float = 0.1
    intentcl_weight: float = 0.1
    temperature: float = 1.0
    # augmentations (ratios of the sequence length)
    crop_ratio: float = 0.2
    mask_ratio: float = 0.7
    reorder_ratio: float = 0.2

    def __post_init__(self):
        def check(ok: bool, name: str, rule: str):
            if not ok:
                value = getattr(self, name)
                raise ValueError(f"ELCRecConfig.{name} must be {rule}, got {value!r}")

        for name in (
            "n_items",
            "block_size",
            "n_embd",
            "n_head",
            "n_layer",
            "trans_slots",
        ):
            value = getattr(self, name)
            check(isinstance(value, int) and value >= 1, name, "an integer >= 1")
        check(
            isinstance(self.n_intents, int) and self.n_intents >= 1,
            "n_intents",
            "an integer >= 1",
        )
        check(self.n_embd % self.n_head == 0, "n_embd", "a multiple of n_head")
        for name in ("dropout", "attn_dropout"):
            check(0.0 <= getattr(self, name) < 1.0, name, "in [0, 1)")
        for name in ("crop_ratio", "mask_ratio", "reorder_ratio"):
            check(0.0 <= getattr(self, name) <= 1.0, name, "in [0, 1]")
        check(self.init_std > 0, "init_std", "> 0")
        check(
            isinstance(self.ce_max_rows, int) and self.ce_max_rows >= 0,
            "ce_max_rows",
            "an integer >= 0",
        )
        check(self.pop_half_life > 0, "pop_half_life", "> 0")
        check(self.temperature > 0, "temperature", "> 0")
        for name in ("clu_weight", "seqcl_weight", "intentcl_weight"):
            check(getattr(self, name) >= 0, name, ">= 0")
        check(self.pooling in ("all", "real"), "pooling", "'all' or 'real'")
        check(self.prototype in ("shift", "concat"), "prototype", "'shift' or 'concat'")
        check(self.rec_loss in ("bce", "ce"), "rec_loss", "'bce' or 'ce'")
        check(self.clu_pull in ("all", "nearest"), "clu_pull", "'all' or 'nearest'")
        check(
            self.seqcl_similarity in ("dot", "cosine"),
            "seqcl_similarity",
            "'dot' or 'cosine'",
        )

    @property
    def uses_intents(self) -> bool:
        """True unless every intent loss is switched off (plain SASRec)."""
        return self.clu_weight > 0 or self.seqcl_weight > 0 or self.intentcl_weight > 0

    def sasrec(self) -> ELCRecConfig:
        """The same encoder with clustering and contrast off: plain SASRec."""
        return replace(self, clu_weight=0.0, seqcl_weight=0.0, intentcl_weight=0.0)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> ELCRecConfig:
        known = {f.name for f in fields(cls)}
        unknown = set(d) - known
        if unknown:
            raise ValueError(f"ELCRecConfig has no field(s) {sorted(unknown)}")
        return cls(**d)

    @classmethod
    def preset(cls, name: str, **overrides) -> ELCRecConfig:
        """The paper's per-data-set settings: beauty, sports, toys, yelp."""
        if name not in PRESETS:
            raise ValueError(f"unknown preset {name!r}; choose from {sorted(PRESETS)}")
        return cls(**{**PRESETS[name], **overrides})


# Layers, number of intents, clustering trade-off and prototype mode per data
# set, as in the paper's published run scripts.
PRESETS: dict[str, dict] = {
    "beauty": dict(n_layer=1, n_intents=256, clu_weight=10.0, prototype="shift"),
    "sports": dict(n_layer=2, n_intents=512, clu_weight=1.0, prototype="concat"),
    "toys": dict(n_layer=3, n_intents=512, clu_weight=1.0, prototype="concat"),
    "yelp": dict(n_layer=2, n_intents=256, clu_weight=0.1, prototype="concat"),
}


# ---------------------------------------------------------------------------
# encoder


class Layout:
    """Where the real tokens of a left-padded batch (B, T) sit.

    Rows are grouped by span (distance from the first real item to the end)
    into buckets of span <= 8, 16, 32, ... T; each bucket's attention grid is
    (Bb, Tb) with Tb its largest span, so short sequences cost little.
    Packed order: bucket by bucket, row-major inside a bucket; ``flat_idx``
    gives each packed token's position in the flattened (B * T) batch.
    """

    EDGES = (8, 16, 32)

    def __init__(self, flat_idx, buckets, n_real):
        self.flat_idx = flat_idx  # (R,)
        self.buckets = buckets  # [((start, stop), grid_idx, (Bb, Tb), mask)]
        self.n_real = n_real

    @classmethod
    def build(cls, seqs: torch.Tensor) -> Layout:
        B, T = seqs.shape
        dev = seqs.device
        real = seqs > 0  # (B, T)
        first = torch.where(real.any(1), real.float().argmax(1), T)  # (B,)
        span = T - first  # (B,)
        edges = [e for e in cls.EDGES if e < T] + [T]
        flat, buckets, start, lo = [], [], 0, 0
        for hi in edges:
            rows = ((span > lo) & (span <= hi)).nonzero().squeeze(1)  # (Bb,)
            lo = hi
            if rows.numel() == 0:
                continue
            Tb = int(span[rows].max())
            sub = real[rows, T - Tb :]  # (Bb, Tb)
            grid_idx = sub.reshape(-1).nonzero().squeeze(1)  # (Rb,)
            Bb = rows.numel()
            r, c = grid_idx // Tb, grid_idx % Tb
            flat.append(rows[r] * T + (T - Tb) + c)
            causal = torch.ones(Tb, Tb, dtype=torch.bool, device=dev).tril()
            eye = torch.eye(Tb, dtype=torch.bool, device=dev)
            mask = ((causal & sub[:, None, :]) | eye).unsqueeze(1)  # (Bb, 1, Tb, Tb)
            stop = start + grid_idx.numel()
            buckets.append(((start, stop), grid_idx, (Bb, Tb), mask))
            start = stop
        flat_idx = (
            torch.cat(flat) if flat else torch.zeros(0, dtype=torch.long, device=dev)
        )
        return cls(flat_idx, buckets, start)

    def unpack(self, x: torch.Tensor, B: int, T: int) -> torch.Tensor:
        """Packed rows (R + T, ...) -> (B, T, ...): template rows fill padding."""
        tail = x.shape[1:]
        out = x[self.n_real :].unsqueeze(0).expand(B, T, *tail).reshape(B * T, *tail)
        out = out.index_copy(0, self.flat_idx, x[: self.n_real])
        return out.view(B, T, *tail)


class SelfAttention(nn.Module):
    """Causal multi-head self-attention over packed tokens.

    Position-wise work (projections) runs on the R real tokens only. For the
    attention product they are scattered into one small grid per length
    bucket (see :class:`Layout`). The T padding tokens of the template row
    attend to themselves only, so their output is their own value vector.
    """

    def __init__(self, config: ELCRecConfig):
        super().__init__()
        self.n_head = config.n_head
        self.attn_dropout = config.attn_dropout
        self.c_attn = nn.Linear(config.n_embd, 3 * config.n_embd)
        self.c_proj = nn.Linear(config.n_embd, config.n_embd)
        self.resid_dropout = nn.Dropout(config.dropout)

    def forward(self, x, layout: Layout):
        C = x.shape[1]
        nh, hs = self.n_head, C // self.n_head
        p = self.attn_dropout if self.training else 0.0
        qkv = self.c_attn(x)  # (R + T, 3C)
        ys = []
        for (start, stop), grid_idx, (Bb, Tb), mask in layout.buckets:
            grid = qkv.new_zeros(Bb * Tb, 3 * C).index_copy(
                0, grid_idx, qkv[start:stop]
            )
            q, k, v = grid.view(Bb, Tb, 3 * C).split(C, dim=2)  # each (Bb, Tb, C)
            q = q.view(Bb, Tb, nh, hs).transpose(1, 2)  # (Bb, nh, Tb, hs)
            k = k.view(Bb, Tb, nh, hs).transpose(1, 2)
            v = v.view(Bb, Tb, nh, hs).transpose(1, 2)
            # mask (Bb, 1, Tb, Tb) bool, True where the query may attend to the key
            y = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
            ys.append(y.transpose(1, 2).reshape(Bb * Tb, C)[grid_idx])  # (Rb, C)
        # Note: the template's self-attention weight is 1 and skips attention
        # dropout; padding states carry no information either way.
        ys.append(qkv[layout.n_real :, 2 * C :])  # (T, C) value vectors
        return self.resid_dropout(self.c_proj(torch.cat(ys, dim=0)))


class Block(nn.Module):
    """Post-norm transformer block, as in SASRec: x = LN(x + f(x))."""

    def __init__(self, config: ELCRecConfig):
        super().__init__()
        self.attn = SelfAttention(config)
        self.ln_1 = nn.LayerNorm(config.n_embd, eps=1e-12)
        self.mlp = nn.Sequential(
            nn.Linear(config.n_embd, 4 * config.n_embd),
            nn.GELU(),
            nn.Linear(4 * config.n_embd, config.n_embd),
            nn.Dropout(config.dropout),
        )
        self.ln_2 = nn.LayerNorm(config.n_embd, eps=1e-12)

    def forward(self, x, layout: Layout):
        x = self.ln_1(x + self.attn(x, layout))
        x = self.ln_2(x + self.mlp(x))
        return x


# ---------------------------------------------------------------------------
# the model


class ELCRec(nn.Module):
    """SASRec sequence encoder plus K learnable, unit-length intent centers.

    Typical training step::

        losses = model.losses(seqs, targets)      # dict, "total" to minimise
        losses["total"].backward(); optimizer.step()
        model.renormalize_centers()
    """

    def __init__(self, config: ELCRecConfig):
        super().__init__()
        self.config = config
        C = config.n_embd
        width = C + 1 if config.item_bias else C
        self.tok_emb = nn.Embedding(config.n_items + 2, width, padding_idx=0)
        self.pos_emb = nn.Embedding(config.block_size, C)
        self.ln_emb = nn.LayerNorm(C, eps=1e-12)
        self.drop = nn.Dropout(config.dropout)
        self.blocks = nn.ModuleList(Block(config) for _ in range(config.n_layer))
        # Random unit vectors until init_centers() sees real sequence vectors.
        self.centers = nn.Parameter(
            F.normalize(torch.randn(config.n_intents, C), dim=1)
        )
        self.register_buffer("centers_ready", torch.tensor(False))

        if config.pop_prior:
            self.register_buffer("pop_counts", torch.zeros(config.n_items + 2))
            self.pop_weight = nn.Parameter(torch.tensor(1.0))
        if config.trans_prior:
            shape = (config.n_items + 2, config.trans_slots)
            self.register_buffer("trans_next", torch.zeros(shape, dtype=torch.long))
            self.register_buffer("trans_counts", torch.zeros(shape))
            self.trans_weight = nn.Parameter(torch.tensor(1.0))

        self.apply(self._init_weights)
        if config.item_bias:
            with torch.no_grad():
                self.tok_emb.weight[:, C].zero_()

    def _init_weights(self, module):
        # SASRec/BERT initialisation: N(0, init_std) weights, zero biases.
        std = self.config.init_std
        if isinstance(module, nn.Linear):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Embedding):
            nn.init.normal_(module.weight, mean=0.0, std=std)
            if module.padding_idx is not None:
                with torch.no_grad():
                    module.weight[module.padding_idx].zero_()
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)

    @property
    def n_items(self) -> int:
        return self.config.n_items

    # --- encoder ---------------------------------------------------------

    def encode(self, seqs: torch.Tensor) -> torch.Tensor:
        """Hidden states (B, T, C) of left-padded item sequences (B, T).

        Position t attends to the real items at positions <= t; padding is
        never attended to. A padding position attends to itself only, so its
        state depends on its position alone (it matters only to "all" pooling
        and to the flattened views of the sequence-level contrast).
        """
        x, layout = self.encode_packed(seqs)
        return layout.unpack(x, *seqs.shape)

    def encode_packed(self, seqs: torch.Tensor) -> tuple[torch.Tensor, Layout]:
        """States of the real tokens then of the T template tokens: (R + T, C).

        Speed: most positions are padding (Beauty: 6 real of 50 on average), so
        position-wise layers run on the packed real tokens plus one template
        row of T padding tokens, and attention on small per-bucket grids.
        """
        B, T = seqs.shape
        assert T <= self.config.block_size, f"sequence length {T} > block_size"
        layout = Layout.build(seqs)
        tpos = torch.arange(T, device=seqs.device)
        tok = torch.cat([seqs.reshape(-1)[layout.flat_idx], torch.zeros_like(tpos)])
        # Left padding: the last position always has position id block_size - 1.
        pos = torch.cat([layout.flat_idx % T, tpos]) + (self.config.block_size - T)
        emb = self.tok_emb(tok)
        if self.config.item_bias:
            emb = emb[:, : self.config.n_embd]  # the last column is the bias
        x = self.drop(self.ln_emb(emb + self.pos_emb(pos)))  # (R+T, C)
        for block in self.blocks:
            x = block(x, layout)
        return x, layout

    def pool(self, h: torch.Tensor, seqs: torch.Tensor) -> torch.Tensor:
        """Mean of the states (B, T, C) -> (B, C), over positions per ``pooling``."""
        if self.config.pooling == "all":
            return h.mean(dim=1)
        real = (seqs > 0).unsqueeze(-1).to(h.dtype)  # (B, T, 1)
        return (h * real).sum(dim=1) / real.sum(dim=1).clamp(min=1.0)

    def intent_vectors(self, seqs: torch.Tensor, h: torch.Tensor | None = None):
        """Unit sequence vectors z (B, C) used for intent assignment."""
        if h is None:
            h = self.encode(seqs)
        return F.normalize(self.pool(h, seqs), dim=-1)

    def nearest_center(self, x: torch.Tensor) -> torch.Tensor:
        """Index of the nearest center for each row of x (..., C) -> (...)."""
        c = self.centers
        # argmin_k ||x - c_k||^2 = argmax_k (2 x.c_k - ||c_k||^2); one matmul
        score = 2 * x @ c.T - (c * c).sum(dim=1)  # (..., K)
        return score.argmax(dim=-1)

    # --- losses ------------------------------------------------------------

    def losses(
        self,
        seqs: torch.Tensor,
        targets: torch.Tensor,
        negatives: torch.Tensor | None = None,
        views: tuple[torch.Tensor, torch.Tensor] | None = None,
        generator: torch.Generator | None = None,
    ) -> dict[str, torch.Tensor]:
        """The whole ELCRec objective for one batch.

        Args:
            seqs: (B, T) left-padded input item indices.
            targets: (B, T) next item at each position, 0 where there is none.
            negatives: (B, T) negative items; sampled when None, uniformly among
                items in neither ``seqs`` nor ``targets`` of the same row.
            views: two augmented (B, T) views of ``seqs``; made when None.
            generator: random source for negatives and augmentations.

        Returns:
            ``rec``, ``seqcl``, ``intentcl``, ``clu`` (unweighted) and ``total``
            (weighted sum), each a scalar tensor. Intent terms are zero tensors
            when their weight is zero.

        Note: if the centers were never initialised, they are seeded here by
        k-means on this batch's sequence vectors.
        """
        cfg = self.config
        B, T = seqs.shape
        need_views = cfg.seqcl_weight > 0 or cfg.intentcl_weight > 0
        if need_views and views is None:
            views = (
                self.augment(seqs, generator=generator),
                self.augment(seqs, generator=generator),
            )

        # One encoder pass over the batch and both views: (3B, T) -> (3B, T, C)
        if need_views:
            x, layout = self.encode_packed(torch.cat([seqs, views[0], views[1]], dim=0))
            h_all = layout.unpack(x, 3 * B, T)  # (3B, T, C)
            h, h_views = h_all[:B], h_all[B:]  # (B, T, C), (2B, T, C)
        else:
            h = self.encode(seqs)

        out = {"rec": self._rec_loss(h, seqs, targets, negatives, generator)}
        zero = out["rec"].new_zeros(())

        if cfg.uses_intents:
            z = self.intent_vectors(seqs, h)  # (B, C), unit length
            if not bool(self.centers_ready):
                self.init_centers(z.detach(), generator=generator)
            out["clu"] = self.clustering_loss(z)
            c_star = self.centers[self.nearest_center(z.detach())]  # (B, C)
        else:
            out["clu"] = zero

        if cfg.seqcl_weight > 0:
            # shift (or extend) every position by its nearest center
            # nearest centers of the R + T distinct states only, then unpacked
            k = layout.unpack(self.nearest_center(x.detach()), 3 * B, T)[B:]  # (2B, T)
            c_pos = self.centers[k]  # (2B, T, C)
            if cfg.prototype == "shift":
                hv = h_views + c_pos
            else:
                hv = torch.cat([h_views, c_pos], dim=-1)  # (2B, T, 2C)
            flat = hv.reshape(2 * B, -1)  # (2B, T*C')
            if cfg.seqcl_similarity == "cosine":
                flat = F.normalize(flat, dim=1)
            out["seqcl"] = info_nce(flat[:B], flat[B:], cfg.temperature)
        else:
            out["seqcl"] = zero

        if cfg.intentcl_weight > 0:
            v = self.pool(h_views, torch.cat([views[0], views[1]], dim=0))  # (2B, C)
            out["intentcl"] = 0.5 * (
                info_nce(v[:B], c_star, cfg.temperature)
                + info_nce(v[B:], c_star, cfg.temperature)
            )
        else:
            out["intentcl"] = zero

        out["total"] = (
            out["rec"]
            + cfg.seqcl_weight * out["seqcl"]
            + cfg.intentcl_weight * out["intentcl"]
            + cfg.clu_weight * out["clu"]
        )
        return out

    def _rec_loss(self, h, seqs, targets, negatives, generator):
        real = targets > 0  # (B, T)
        n_real = real.sum().clamp(min=1)
        if self.config.rec_loss == "ce":
            # full softmax over items 1..N; padding and spare columns excluded
            b, t = self._softmax_positions(real, generator)
            logits = self._item_logits(h[b, t], seqs[b, t], targets[b, t])
            return F.cross_entropy(logits, targets[b, t] - 1)

        if negatives is None:
            seen = torch.cat([seqs, targets], dim=1)  # (B, 2T)
            negatives = sample_negatives(
                seen, T=targets.shape[1], n_items=self.n_items, generator=generator
            )
        q = self.with_bias(h)
        pos = (q * self.tok_emb(targets)).sum(-1)  # (B, T)
        neg = (q * self.tok_emb(negatives)).sum(-1)  # (B, T)
        # -log sigma(pos) - log(1 - sigma(neg)) = -logsig(pos) - logsig(-neg)
        loss = -(F.logsigmoid(pos) + F.logsigmoid(-neg))
        loss = (loss * real).sum() / n_real
        if not self.has_priors:
            return loss
        # The sampled loss would only ever raise the priors' weights (a
        # uniform negative has next to no counts): they are fitted for
        # ranking instead, by a softmax over all items of the model's own
        # scores (held fixed) plus the priors, at each window's last position.
        last = real[:, -1]
        logits = self._item_logits(
            h[:, -1][last], seqs[:, -1][last], targets[:, -1][last], fixed=True
        )
        return loss + F.cross_entropy(logits, targets[:, -1][last] - 1)

    def _softmax_positions(self, real: torch.Tensor, generator=None):
        """Row and column indices of the real positions (B, T) in the full
        softmax: all of them, or ``ce_max_rows`` with every last one kept."""
        b, t = real.nonzero(as_tuple=True)
        cap = self.config.ce_max_rows
        if not cap or len(b) <= cap:
            return b, t
        keys = torch.rand(len(b), generator=generator, device=real.device)
        keys[t == real.shape[1] - 1] = -1.0  # the last positions sort first
        keep = keys.argsort()[:cap].sort().values
        return b[keep], t[keep]

    def _item_logits(self, h, prev, target, fixed: bool = False) -> torch.Tensor:
        """Scores (R, N) of items 1..N from states ``h`` (R, C) after items
        ``prev`` (R,), the count priors included; ``fixed`` holds the encoder's
        part constant (only the priors' weights learn). The pair ``prev ->
        target`` is left out of the transition counts: it was counted when it
        arrived, and was not when it was predicted."""
        items = self.tok_emb.weight[1 : self.n_items + 1]
        q = self.with_bias(h)
        logits = (q.detach() @ items.detach().T) if fixed else q @ items.T
        if self.config.pop_prior:
            ids = torch.arange(1, self.n_items + 1, device=logits.device)
            logits = logits + self.prior(ids)
        if self.config.trans_prior:
            counts = self.successor_counts(prev)  # (R, N + 2)
            rows = torch.arange(len(counts), device=counts.device)
            counts[rows, target] = (counts[rows, target] - 1.0).clamp(min=0.0)
            logits = logits + self.trans_weight * torch.log1p(
                counts[:, 1 : self.n_items + 1]
            )
        return logits

    def clustering_loss(self, z: torch.Tensor) -> torch.Tensor:
        """L_clu = pull - push on unit vectors z (B, C) and the centers (K, C).

        pull = mean over all (b, k) of ||z_b - c_k||^2 (``clu_pull="all"``, the
        paper) or mean over b of ||z_b - c_k*(b)||^2 (``clu_pull="nearest"``);
        push = mean over distinct pairs j != k of ||c_j - c_k||^2.

        Note: the paper's "all" pull depends on z only through the batch mean
        of z, so on its own it draws every sequence vector towards the mean
        center, not towards its own intent; the contrastive terms and the rec
        loss are what keep the vectors apart.
        Both reduce to sums of norms and of one vector sum, so no (B, K) or
        (K, K) distance matrix is built: sum_{b,k} ||z_b - c_k||^2
        = K sum ||z_b||^2 + B sum ||c_k||^2 - 2 (sum z_b).(sum c_k).
        """
        c = self.centers
        B, K = z.shape[0], c.shape[0]
        zz, cc = (z * z).sum(), (c * c).sum()
        if self.config.clu_pull == "all":
            pull = (K * zz + B * cc - 2 * z.sum(0) @ c.sum(0)) / (B * K)
        else:
            own = c[self.nearest_center(z.detach())]  # (B, C)
            pull = ((z - own) ** 2).sum(-1).mean()
        if K > 1:
            c_sum = c.sum(0)
            push = (2 * K * cc - 2 * c_sum @ c_sum) / (K * (K - 1))
        else:
            push = torch.zeros((), device=c.device)
        return pull - push

    # --- augmentation ------------------------------------------------------

    def augment(self, seqs: torch.Tensor, generator: torch.Generator | None = None):
        """One random view of each left-padded sequence (B, T): crop, mask or reorder.

        Each row gets one operator, picked uniformly: crop keeps a random
        contiguous ``crop_ratio`` of the items (at least one); mask sets
        ``mask_ratio`` of the items to padding; reorder shuffles a random
        contiguous ``reorder_ratio`` of them. All rows are done at once.
        """
        cfg = self.config
        B, T = seqs.shape
        dev = seqs.device
        gen = generator

        def rand(*shape):
            return torch.rand(*shape, generator=gen, device=dev)

        n = (seqs > 0).sum(dim=1)  # (B,) real length
        first = T - n  # (B,) index of the first real position
        t = torch.arange(T, device=dev).expand(B, T)  # (B, T)

        # crop: keep L = max(1, floor(ratio * n)) items starting at a random offset
        L = torch.clamp((cfg.crop_ratio * n).floor().long(), min=1)
        L = torch.minimum(L, n.clamp(min=1))
        start = (rand(B) * (n - L + 1).clamp(min=1)).floor().long()  # (B,)
        src = (first + start - (T - L)).unsqueeze(1) + t  # (B, T)
        crop = seqs.gather(1, src.clamp(0, T - 1))
        crop = torch.where(t >= (T - L).unsqueeze(1), crop, 0)

        # mask: the floor(ratio * n) real positions with the smallest random keys
        m = (cfg.mask_ratio * n).floor().long()  # (B,)
        keys = torch.where(seqs > 0, rand(B, T), 2.0)  # padding sorts last
        rank = keys.argsort(dim=1).argsort(dim=1)  # (B, T) rank of each position
        masked = torch.where(rank < m.unsqueeze(1), 0, seqs)

        # reorder: shuffle a window of R = floor(ratio * n) items by sorting keys
        # where window positions get start + U[0, 1) and others keep their index
        R = (cfg.reorder_ratio * n).floor().long()
        wstart = first + (rand(B) * (n - R + 1).clamp(min=1)).floor().long()
        inside = (t >= wstart.unsqueeze(1)) & (t < (wstart + R).unsqueeze(1))
        okeys = torch.where(inside, wstart.unsqueeze(1) + rand(B, T), t.to(torch.float))
        reordered = seqs.gather(1, okeys.argsort(dim=1))

        op = (rand(B) * 3).floor().long().clamp(max=2).unsqueeze(1)  # (B, 1)
        out = torch.where(op == 0, crop, torch.where(op == 1, masked, reordered))
        return torch.where(n.unsqueeze(1) > 0, out, seqs)

    # --- inference ---------------------------------------------------------

    @torch.no_grad()
    def score_last(self, seqs: torch.Tensor, priors: bool = True) -> torch.Tensor:
        """Next-item logits (B, N + 1) from the last position; column 0 is -inf.

        ``priors=False`` leaves out the count priors (``pop_prior``,
        ``trans_prior``), for a caller that adds :meth:`prior_scores` itself.
        """
        h = self.encode(seqs)[:, -1, :]  # (B, C)
        logits = self.with_bias(h) @ self.tok_emb.weight[: self.n_items + 1].T
        if priors and self.has_priors:
            logits += self.prior_scores(seqs[:, -1])
        logits[:, 0] = float("-inf")
        return logits

    @property
    def has_priors(self) -> bool:
        return self.config.pop_prior or self.config.trans_prior

    @torch.no_grad()
    def prior_scores(self, last: torch.Tensor) -> torch.Tensor:
        """The count priors' part (B, N + 1) of the scores after sequences
        whose last items are ``last`` (B,), 0 for an empty sequence."""
        n = self.n_items + 1
        out = torch.zeros(len(last), n, device=last.device)
        if self.config.pop_prior:
            out += self.prior(torch.arange(n, device=last.device))
        if self.config.trans_prior:
            counts = self.successor_counts(last)[:, :n]
            out += self.trans_weight * torch.log1p(counts)
        return out

    @torch.no_grad()
    def observe(self, prev: int, item: int) -> None:
        """Count one event of row ``item`` right after row ``prev`` (0: the
        user's first) in the count priors."""
        if self.config.pop_prior:
            self.observe_items(torch.tensor([item], device=self.pop_counts.device))
        if self.config.trans_prior and prev:
            self.observe_transitions([(prev, item)])

    def prior(self, items: torch.Tensor) -> torch.Tensor:
        """The popularity term of the items' scores (``pop_prior``)."""
        return self.pop_weight * torch.log1p(self.pop_counts[items])

    @torch.no_grad()
    def observe_items(self, items: torch.Tensor) -> None:
        """Count events of ``items`` (rows) in the decayed popularity
        (``pop_prior``): older counts decay by one event per item given."""
        if not self.config.pop_prior or items.numel() == 0:
            return
        self.pop_counts.mul_(0.5 ** (items.numel() / self.config.pop_half_life))
        self.pop_counts.index_add_(
            0, items, torch.ones(items.numel(), device=self.pop_counts.device)
        )

    def pair_counts(self, prev: torch.Tensor, items: torch.Tensor) -> torch.Tensor:
        """Counts of "``items`` right after ``prev``" (``trans_prior``), same shape."""
        slots = self.trans_next[prev]  # (..., M)
        hit = slots == items.unsqueeze(-1)
        return (self.trans_counts[prev] * hit).sum(-1)

    def successor_counts(self, prev: torch.Tensor) -> torch.Tensor:
        """Counts (R, N + 2) of every item right after each of ``prev`` (R,)."""
        out = self.trans_counts.new_zeros(prev.shape[0], self.n_items + 2)
        # Empty slots point at the padding column with a zero count.
        return out.scatter_(1, self.trans_next[prev], self.trans_counts[prev])

    @torch.no_grad()
    def observe_transitions(self, pairs: list[tuple[int, int]]) -> None:
        """Count item pairs (a, b), "b right after a", in the successor table
        (``trans_prior``), in order; Space-Saving when a row is full."""
        if not self.config.trans_prior or not pairs:
            return
        on_cpu = self.trans_next.device.type == "cpu"
        nxt_t = self.trans_next if on_cpu else self.trans_next.cpu()
        cnt_t = self.trans_counts if on_cpu else self.trans_counts.cpu()
        nxt, cnt = nxt_t.numpy(), cnt_t.numpy()
        for a, b in pairs:
            slot = np.flatnonzero(nxt[a] == b)
            if slot.size:
                cnt[a, slot[0]] += 1.0
                continue
            j = int(cnt[a].argmin())  # an empty slot (count 0) first
            nxt[a, j] = b
            cnt[a, j] += 1.0
        if not on_cpu:
            self.trans_next.copy_(nxt_t)
            self.trans_counts.copy_(cnt_t)

    @torch.no_grad()
    def forget_counts(self, rows: torch.Tensor) -> None:
        """Drop the count priors' counts of item ``rows`` (their ids are
        reused): their events, and the pairs from or to them."""
        if self.config.pop_prior:
            self.pop_counts[rows] = 0.0
        if not self.config.trans_prior:
            return
        self.trans_next[rows] = 0
        self.trans_counts[rows] = 0.0
        to_rows = torch.isin(self.trans_next, rows)
        self.trans_next[to_rows] = 0
        self.trans_counts[to_rows] = 0.0

    def with_bias(self, h: torch.Tensor) -> torch.Tensor:
        """States (..., C) as queries of the item table: with ``item_bias`` a
        column of ones is appended, so ``query @ row`` adds the item's bias."""
        if not self.config.item_bias:
            return h
        return torch.cat([h, torch.ones_like(h[..., :1])], dim=-1)

    @property
    def item_vectors(self) -> torch.Tensor:
        """The item table without the bias column (N + 2, C)."""
        return self.tok_emb.weight[:, : self.config.n_embd]

    @torch.no_grad()
    def assign(self, seqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Each sequence's intent k* = argmin_k ||z - c_k||^2 and its weight.

        Returns ``(index (B,) long, weight (B,) float)``; the weight is the
        cosine similarity z . c_k* in [-1, 1] (centers are unit length), a
        confidence that is comparable across models.
        """
        z = self.intent_vectors(seqs)
        k = self.nearest_center(z)
        c = F.normalize(self.centers[k], dim=-1)
        return k, (z * c).sum(-1)

    # --- centers -------------------------------------------------------------

    @torch.no_grad()
    def init_centers(
        self,
        z: torch.Tensor,
        n_iter: int = 10,
        generator: torch.Generator | None = None,
    ) -> None:
        """Seed the centers by k-means++ on vectors z (M, C), then Lloyd steps.

        With fewer distinct vectors than centers, every vector becomes a center
        and the remaining centers stay random unit vectors.
        """
        z = F.normalize(z.detach().to(self.centers.device, torch.float32), dim=-1)
        self.centers.data.copy_(kmeans(z, self.config.n_intents, n_iter, generator))
        self.renormalize_centers()
        self.centers_ready.fill_(True)

    @torch.no_grad()
    def renormalize_centers(self) -> None:
        """Project the centers back to unit length (after each optimizer step)."""
        self.centers.data.copy_(F.normalize(self.centers.data, dim=1))

    # --- vocabulary ------------------------------------------------------------

    @torch.no_grad()
    def grow_items(self, n_items: int) -> None:
        """Enlarge the item embedding to ``n_items`` items, keeping existing rows.

        New item rows are initialised as at construction; the spare id moves to
        ``n_items + 1``. The embedding becomes a new Parameter: the caller must
        rebuild or extend the optimizer state.
        """
        old = self.n_items
        if n_items < old:
            raise ValueError(f"cannot shrink the item table from {old} to {n_items}")
        if n_items == old:
            return
        w_old = self.tok_emb.weight
        emb = nn.Embedding(n_items + 2, w_old.shape[1], padding_idx=0)
        emb.to(device=w_old.device, dtype=w_old.dtype)
        nn.init.normal_(emb.weight, mean=0.0, std=self.config.init_std)
        emb.weight[: old + 1] = w_old[: old + 1]  # padding and items 1..old
        emb.weight[n_items + 1] = w_old[old + 1]  # the spare id
        emb.weight[0].zero_()
        if self.config.item_bias:
            emb.weight[old + 1 : n_items + 1, self.config.n_embd] = 0.0
        self.tok_emb = emb
        if self.config.pop_prior:
            counts = self.pop_counts.new_zeros(n_items + 2)
            counts[: old + 1] = self.pop_counts[: old + 1]
            self.pop_counts = counts
        if self.config.trans_prior:
            for name in ("trans_next", "trans_counts"):
                table = getattr(self, name)
                grown = table.new_zeros(n_items + 2, table.shape[1])
                grown[: old + 1] = table[: old + 1]  # the spare id has no pairs
                setattr(self, name, grown)
        self.config = replace(self.config, n_items=n_items)


# ---------------------------------------------------------------------------
# helpers (pure functions of tensors)


def info_nce(a: torch.Tensor, b: torch.Tensor, temperature: float = 1.0):
    """InfoNCE between paired rows of a and b (B, D), dot-product similarity.

    Each of the 2B rows has its pair as positive and the other 2B - 2 rows of
    both sides as negatives (SimCLR's NT-Xent without normalisation, as in the
    published code); averaged over the 2B rows.
    """
    B = a.shape[0]
    x = torch.cat([a, b], dim=0)  # (2B, D)
    sim = (x @ x.T) / temperature  # (2B, 2B)
    sim = sim.masked_fill(
        torch.eye(2 * B, dtype=torch.bool, device=x.device), -math.inf
    )
    # row i pairs with i + B (and i + B with i)
    labels = torch.cat([torch.arange(B, 2 * B), torch.arange(0, B)]).to(x.device)
    return F.cross_entropy(sim, labels)


def sample_negatives(
    seen: torch.Tensor, T: int, n_items: int, generator=None, max_rounds: int = 50
) -> torch.Tensor:
    """Uniform items in 1..n_items not in the same row of ``seen`` (B, S): (B, T).

    Rejection sampling, all rows at once: redraw only the collisions. A row that
    has seen every item keeps a seen item after ``max_rounds`` (harmless).
    """
    B = seen.shape[0]
    dev = seen.device
    neg = torch.randint(1, n_items + 1, (B, T), generator=generator, device=dev)
    for _ in range(max_rounds):
        hit = (neg.unsqueeze(2) == seen.unsqueeze(1)).any(dim=2)  # (B, T)
        if not bool(hit.any()):
            break
        redraw = torch.randint(1, n_items + 1, (B, T), generator=generator, device=dev)
        neg = torch.where(hit, redraw, neg)
    return neg


def kmeans(
    x: torch.Tensor, k: int, n_iter: int = 10, generator: torch.Generator | None = None
) -> torch.Tensor:
    """k centers (k, C) of the rows of x (M, C): k-means++ seeding, Lloyd steps.

    When x has fewer distinct rows than k, the extra centers are random unit
    vectors (they can still be won over by the clustering loss later).
    """
    M, C = x.shape
    dev = x.device
    centers = F.normalize(torch.randn(k, C, generator=generator, device=dev), dim=1)
    if M == 0:
        return centers

    # k-means++: each next seed drawn with probability proportional to D(x)^2
    first = int(torch.randint(M, (1,), generator=generator, device=dev))
    chosen = [first]
    d2 = ((x - x[first]) ** 2).sum(1)  # (M,)
    while len(chosen) < k:
        total = d2.sum()
        if total <= 1e-12:  # every row is already a seed
            break
        nxt = int(torch.multinomial(d2 / total, 1, generator=generator))
        chosen.append(nxt)
        d2 = torch.minimum(d2, ((x - x[nxt]) ** 2).sum(1))
    m = len(chosen)
    centers[:m] = x[chosen]

    # Lloyd steps on the seeded centers only; empty clusters keep their center
    for _ in range(n_iter):
        cm = centers[:m]
        assign = (2 * x @ cm.T - (cm * cm).sum(1)).argmax(1)  # (M,)
        sums = torch.zeros(m, C, device=dev).index_add_(0, assign, x)
        counts = torch.bincount(assign, minlength=m).unsqueeze(1)
        centers[:m] = torch.where(counts > 0, sums / counts.clamp(min=1), cm)
    return centers
