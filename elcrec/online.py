"""Continual ELCRec: learning from a stream of sequence updates.

:class:`OnlineTrainer` knows nothing of Kafka or RocksDB: it is fed
:class:`SequenceUpdate` objects (a user's current recent sequence and how many of
its events are new) and, per call of :meth:`OnlineTrainer.learn_many`:

1. maps external item ids to embedding rows, growing the item table and the
   optimizer state with it, up to ``vocab_capacity`` rows;
2. predicts every new event from the events before it (prequential evaluation,
   test-then-train) and adds HR@k / NDCG@k to a sliding window;
3. takes one optimizer step with the full ELCRec loss on a mini-batch of the
   fresh sequences plus a replay sample of recent ones;
4. checks the loss and gradients are finite, and skips (and counts) the step if
   not, so a non-finite model is never stepped into or published.

Vocabulary policy when full: the item row seen least recently is recycled for
the new item (its embedding re-drawn, its optimizer moments zeroed); replayed
sequences drop items that were evicted. Memory is therefore bounded by
``vocab_capacity``, ``replay_size`` and the model's ``block_size``, not by the
length of the stream.
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field, fields, replace
from pathlib import Path

import numpy as np
import torch

from elcrec.exceptions import ConfigError
from elcrec.model import ELCRec, ELCRecConfig

logger = logging.getLogger(__name__)

KS = (5, 10, 20)
# The rank recorded for an event that cannot be recommended (a miss at every k).
MISS = 2**31 - 1


# Model options of the count priors, which the trainer keeps as configured
# over a warm start.
PRIOR_OPTIONS = ("pop_prior", "pop_half_life", "trans_prior", "trans_slots")
# Model options of the loss only (no weight depends on them): a warm start and
# a resumed checkpoint take the ones configured.
LOSS_OPTIONS = (
    "rec_loss",
    "ce_max_rows",
    "clu_weight",
    "clu_pull",
    "seqcl_similarity",
    "pooling",
)


@dataclass(frozen=True)
class OnlineConfig:
    """Options of the streaming trainer (the model's own are in ELCRecConfig).

    Attributes:
        fresh_per_step: most fresh sequences in one mini-batch; more fresh
            updates than this are split over several steps.
        steps_per_batch: optimizer steps per mini-batch of fresh sequences,
            each with its own replay sample (more learning per event).
        max_steps_per_batch: most steps for one mini-batch whose records carry
            many new events each (a backlog): one step per ``fresh_per_step``
            new events, at most this many (times ``steps_per_batch``).
        max_deferred_batches: batches whose deferred steps are kept
            (``learn_many(defer=True)``); older ones are dropped.
        replay_per_step: replayed recent sequences added to each mini-batch.
        replay_size: recent user sequences kept for replay (bounded, LRU).
        vocab_capacity: most item rows; beyond it the least recently seen
            item's row is recycled.
        lr: Adam learning rate.
        weight_decay: Adam weight decay.
        grad_clip: gradient norm clip (0 disables it).
        metrics_window: events in the sliding prequential HR/NDCG window.
        eval_every: evaluate every n-th new event (1 = all of them).
        seed: random seed of sampling, augmentation and initialisation.
    """

    fresh_per_step: int = 256
    steps_per_batch: int = 1
    max_steps_per_batch: int = 64
    max_deferred_batches: int = 4
    replay_per_step: int = 128
    replay_size: int = 20_000
    vocab_capacity: int = 200_000
    lr: float = 1e-3
    weight_decay: float = 0.0
    grad_clip: float = 5.0
    metrics_window: int = 5_000
    eval_every: int = 1
    seed: int = 0

    def __post_init__(self):
        positive = (
            "fresh_per_step",
            "steps_per_batch",
            "max_steps_per_batch",
            "max_deferred_batches",
            "replay_size",
            "vocab_capacity",
            "metrics_window",
            "eval_every",
        )
        for name in positive:
            if getattr(self, name) < 1:
                raise ConfigError(
                    f"OnlineConfig.{name} must be >= 1, got {getattr(self, name)}"
                )
        if self.replay_per_step < 0:
            raise ConfigError("OnlineConfig.replay_per_step must be >= 0")
        if not self.lr > 0:
            raise ConfigError(f"OnlineConfig.lr must be > 0, got {self.lr}")


@dataclass
class SequenceUpdate:
    """A user's recent items (oldest first) of which the last ``n_new`` are new.

    ``event_ms`` is the event time of the newest event, used for freshness.
    """

    user: str
    items: list[str]
    n_new: int = 1
    event_ms: int | None = None


@dataclass
class _Deferred:
    """Steps of one batch kept for later (:meth:`OnlineTrainer.learn_many`)."""

    rows: list[list[int]]  # the batch's training windows (item rows)
    users: set[str]  # not replayed alongside them
    n_chunks: int
    next_chunk: int
    left: int


@dataclass
class StepReport:
    """What one call of :meth:`OnlineTrainer.learn_many` did."""

    steps: int = 0
    skipped: int = 0
    events: int = 0
    losses: dict[str, float] = field(default_factory=dict)
    new_items: int = 0
    recycled_items: int = 0
    assignments: list[int] = field(default_factory=list)
    ranks: list[int] = field(default_factory=list)
    # user -> wall-clock time (s) at the end of the first optimizer step(s)
    # that trained on every new event of the user's update (for latency).
    used_at: dict[str, float] = field(default_factory=dict)


class SlidingMetrics:
    """HR@k and NDCG@k over the last ``window`` predictions."""

    def __init__(self, window: int, ks: Sequence[int] = KS):
        self.ks = tuple(ks)
        self._ranks: deque[int] = deque(maxlen=window)
        self.count = 0

    def update(self, ranks: Iterable[int]) -> None:
        """Add 0-based ranks of the true item (a large rank for a miss)."""
        for r in ranks:
            self._ranks.append(int(r))
            self.count += 1

    def get(self) -> dict[str, float]:
        if not self._ranks:
            return {f"{m}@{k}": 0.0 for k in self.ks for m in ("hr", "ndcg")}
        ranks = np.fromiter(self._ranks, dtype=np.int64)
        out = {}
        for k in self.ks:
            hit = ranks < k
            out[f"hr@{k}"] = float(hit.mean())
            out[f"ndcg@{k}"] = float((hit / np.log2(ranks.clip(max=k) + 2)).mean())
        return out

    def state(self) -> dict:
        return {"ranks": list(self._ranks), "count": self.count}

    def load_state(self, state: dict) -> None:
        self._ranks.clear()
        self._ranks.extend(state["ranks"])
        self.count = state["count"]


class Vocabulary:
    """External item id <-> embedding row (1-based), bounded, LRU recycling."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.rows: dict[str, int] = {}
        self.ids: list[str] = []  # ids[row - 1]
        self.last_seen: list[int] = []  # per row - 1, the step it was last seen

    def __len__(self) -> int:
        return len(self.ids)

    def lookup(self, item: str) -> int:
        """The row of ``item``, or 0 (padding) if it is unknown."""
        return self.rows.get(item, 0)

    def add(self, items: Iterable[str], step: int) -> tuple[list[int], list[int]]:
        """Give every unknown item a row and mark every item seen at ``step``.

        Returns:
            ``(new_rows, recycled_rows)``: rows appended, and existing rows
            handed to a new item (their previous item is forgotten).

        Raises:
            ConfigError: one call holds more distinct items than the capacity.
        """
        items = list(dict.fromkeys(items))
        unknown = []
        for item in items:
            row = self.rows.get(item)
            if row is None:
                unknown.append(item)
            else:
                self.last_seen[row - 1] = step

        n_free = self.capacity - len(self.ids)
        fresh, spill = unknown[:n_free], unknown[n_free:]
        new_rows = []
        for item in fresh:
            self.ids.append(item)
            self.last_seen.append(step)
            self.rows[item] = len(self.ids)
            new_rows.append(len(self.ids))

        recycled: list[int] = []
        if spill:
            protected = {self.rows[i] for i in items if i in self.rows}
            order = np.argsort(np.asarray(self.last_seen), kind="stable") + 1
            recycled = [int(r) for r in order if int(r) not in protected][: len(spill)]
            if len(recycled) < len(spill):
                raise ConfigError(
                    f"one batch holds more distinct items than vocab_capacity="
                    f"{self.capacity}; raise vocab_capacity"
                )
            for item, row in zip(spill, recycled, strict=True):
                del self.rows[self.ids[row - 1]]
                self.ids[row - 1] = item
                self.rows[item] = row
                self.last_seen[row - 1] = step
        return new_rows, recycled

    def state(self) -> dict:
        return {"ids": list(self.ids), "last_seen": list(self.last_seen)}

    def load_state(self, state: dict) -> None:
        self.ids = list(state["ids"])
        self.last_seen = list(state["last_seen"])
        self.rows = {item: i + 1 for i, item in enumerate(self.ids)}


class OnlineTrainer:
    """Test-then-train learner of ELCRec over a stream of sequence updates.

    Args:
        model_config: the model's hyperparameters; ``n_items`` is ignored (the
            item table grows with the stream).
        config: the streaming options.
        device: where the model lives ("cpu" or "cuda").

    Example:
        >>> from elcrec.model import ELCRecConfig
        >>> trainer = OnlineTrainer(
        ...     ELCRecConfig(n_layer=1, n_intents=4, block_size=8),
        ...     OnlineConfig(replay_per_step=0),
        ... )
        >>> report = trainer.learn_many([SequenceUpdate("u1", ["a", "b", "c"], n_new=3)])
        >>> report.steps, report.events, len(trainer.vocab)
        (1, 3, 3)
    """

    def __init__(
        self,
        model_config: ELCRecConfig,
        config: OnlineConfig | None = None,
        device: str | torch.device = "cpu",
    ):
        self.config = config or OnlineConfig()
        self.device = torch.device(device)
        torch.manual_seed(self.config.seed)
        self.model = ELCRec(replace(model_config, n_items=1)).to(self.device)
        self.optimizer = self._make_optimizer()
        self.vocab = Vocabulary(self.config.vocab_capacity)
        self.replay: OrderedDict[str, list[str]] = OrderedDict()
        self.metrics = SlidingMetrics(self.config.metrics_window)
        self.step = 0
        self.events_seen = 0
        self.skipped_steps = 0
        self.last_losses: dict[str, float] = {}
        self._rng = random.Random(self.config.seed)
        self._gen = torch.Generator(device=self.device).manual_seed(self.config.seed)
        self._eval_counter = 0
        self._deferred: deque[_Deferred] = deque()
        self.deferred_dropped = 0

    @property
    def block_size(self) -> int:
        return self.model.config.block_size

    def _make_optimizer(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(
            self.model.parameters(),
            lr=self.config.lr,
            betas=(0.9, 0.999),
            weight_decay=self.config.weight_decay,
        )

    # --- learning ------------------------------------------------------------

    def learn_many(
        self,
        updates: Iterable[SequenceUpdate],
        steps_per_batch: int | None = None,
        defer: bool = False,
    ) -> StepReport:
        """Predict, then learn from, a batch of sequence updates.

        Updates beyond ``fresh_per_step`` are learned in further steps. Updates of
        one user in one call are merged (the last one wins, new events add up)
        while the last one still carries all the new events; otherwise the
        later one is learned in a following round, so no event is lost.
        ``steps_per_batch`` overrides the configured number for this call.

        ``defer``: take one pass of steps over the new events now (every event
        is trained on before this returns) and keep the other
        ``steps_per_batch - 1`` passes for :meth:`learn_deferred`, which a
        live trainer calls while no new record waits. The newest
        ``max_deferred_batches`` batches keep theirs; older ones are dropped
        (counted in ``deferred_dropped``), so an overloaded trainer learns
        less per event instead of later. Deferred steps are not checkpointed.
        """
        rounds: list[OrderedDict[str, SequenceUpdate]] = [OrderedDict()]
        for u in updates:
            if not u.items:
                continue
            current = rounds[-1]
            prev = current.get(u.user)
            if prev is not None:
                if prev.n_new + u.n_new <= len(u.items):
                    del current[u.user]
                    u = replace(u, n_new=prev.n_new + u.n_new)
                else:
                    current = OrderedDict()
                    rounds.append(current)
            current[u.user] = u

        report = StepReport()
        size = self.config.fresh_per_step
        steps = steps_per_batch or self.config.steps_per_batch
        for merged in rounds:
            batch = list(merged.values())
            for start in range(0, len(batch), size):
                self._learn_chunk(batch[start : start + size], report, steps, defer)
        return report

    def learn_deferred(self) -> StepReport | None:
        """One deferred step (see :meth:`learn_many`), newest batch first;
        None when none is left."""
        while self._deferred and self._deferred[-1].left == 0:
            self._deferred.pop()
        if not self._deferred:
            return None
        d = self._deferred[-1]
        report = StepReport()
        size = self.config.fresh_per_step
        c = d.next_chunk % d.n_chunks
        train_rows = d.rows[c * size : (c + 1) * size]
        train_rows = train_rows + self._replay_sample(d.users)
        if train_rows:
            self._train_step(train_rows, report)
        d.next_chunk += 1
        d.left -= 1
        return report

    @property
    def deferred_steps(self) -> int:
        """Deferred steps still to take."""
        return sum(d.left for d in self._deferred)

    def _learn_chunk(
        self,
        updates: list[SequenceUpdate],
        report: StepReport,
        steps_per_batch: int,
        defer: bool = False,
    ) -> None:
        T = self.block_size
        # Every carried item takes part: a record may carry more new events
        # than the model's window (a burst, or a backlog); each new event is
        # predicted from the T events before it, and the training windows
        # below cover all of them.
        self._register_items([i for u in updates for i in u.items], report)
        rows = [[self.vocab.lookup(i) for i in u.items] for u in updates]
        n_eval = [min(u.n_new, len(r)) for u, r in zip(updates, rows, strict=True)]

        # -- test: predict each new event from the events before it
        ranks = self._prequential(rows, n_eval)
        self.metrics.update(ranks)
        report.ranks.extend(ranks)
        report.events += sum(u.n_new for u in updates)
        self.events_seen += sum(u.n_new for u in updates)

        # -- train: fresh windows plus a replay sample of recent sequences
        # As much learning per event whether events come one per record (live)
        # or many per record (a backlog, one record per user per ingest batch):
        # one step per fresh_per_step trainable new events, each step on at
        # most fresh_per_step fresh windows.
        fresh_users = {u.user for u in updates}
        fresh_rows = [
            w for r, n in zip(rows, n_eval, strict=True) for w in _windows(r, n, T)
        ]
        trainable = sum(min(n, len(r) - 1) for n, r in zip(n_eval, rows, strict=True))
        n_steps = min(
            self.config.max_steps_per_batch,
            max(1, round(trainable / self.config.fresh_per_step)),
        )
        size = self.config.fresh_per_step
        n_chunks = max(1, -(-len(fresh_rows) // size))
        per_pass = max(n_steps, n_chunks)
        total = per_pass * steps_per_batch
        for s in range(per_pass if defer else total):
            c = s % n_chunks
            train_rows = fresh_rows[c * size : (c + 1) * size]
            train_rows = train_rows + self._replay_sample(fresh_users)
            if train_rows:
                self._train_step(train_rows, report)
            if s == n_chunks - 1:  # every fresh window has been trained on
                now = time.time()
                report.used_at.update((u.user, now) for u in updates)
        if defer and total > per_pass:
            self._deferred.append(
                _Deferred(fresh_rows, fresh_users, n_chunks, per_pass, total - per_pass)
            )
            while len(self._deferred) > self.config.max_deferred_batches:
                self.deferred_dropped += self._deferred.popleft().left

        # -- remember these sequences for replay, most recent last
        for u in updates:
            self.replay[u.user] = list(u.items[-(T + 1) :])
            self.replay.move_to_end(u.user)
        while len(self.replay) > self.config.replay_size:
            self.replay.popitem(last=False)

        # -- the users' current intents (for drift monitoring)
        inputs = self._pad([r[-T:] for r in rows])
        self.model.eval()
        k, _ = self.model.assign(inputs)
        report.assignments.extend(k.tolist())

    def _register_items(self, items: list[str], report: StepReport) -> None:
        new_rows, recycled = self.vocab.add(items, self.step)
        if len(self.vocab) > self.model.n_items:
            self._grow(len(self.vocab))
        if recycled:
            self._reset_rows(recycled)
            logger.debug("Recycled item rows count=%d", len(recycled))
        report.new_items += len(new_rows)
        report.recycled_items += len(recycled)

    def _train_step(self, train_rows: list[list[int]], report: StepReport) -> None:
        # Inputs s[:-1] predict targets s[1:]; both left-padded to T.
        inputs = self._pad([r[:-1] for r in train_rows])  # (B, T)
        targets = self._pad([r[1:] for r in train_rows])  # (B, T)
        self.model.train()
        losses = self.model.losses(inputs, targets, generator=self._gen)
        total = losses["total"]
        if not torch.isfinite(total):
            self._skip(f"loss is {total.item()}")
            report.skipped += 1
            return

        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        clip = self.config.grad_clip if self.config.grad_clip > 0 else float("inf")
        grad_norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), clip)
        if not torch.isfinite(grad_norm):
            self.optimizer.zero_grad(set_to_none=True)
            self._skip(f"gradient norm is {grad_norm.item()}")
            report.skipped += 1
            return

        self.optimizer.step()
        self.model.renormalize_centers()
        self.step += 1
        report.steps += 1
        self.last_losses = {k: float(v.detach()) for k, v in losses.items()}
        report.losses = dict(self.last_losses)

    def _skip(self, why: str) -> None:
        self.skipped_steps += 1
        logger.warning(
            "Skipped a training step, the model is unchanged reason=%s skipped=%d",
            why,
            self.skipped_steps,
        )

    @torch.no_grad()
    def _prequential(self, rows: list[list[int]], n_new: list[int]) -> list[int]:
        """0-based rank of each new event's item among all items, seen excluded.

        The model sees the ``block_size`` events before the event; "seen" is
        every item the record carries before it. A user's first event is
        predicted from the empty sequence, as a popularity baseline would.
        The count priors (``pop_prior``, ``trans_prior``) learn here, event by
        event in record order: each event is ranked with the counts of the
        events before it, as the streaming baselines are, while the encoder
        learns per mini-batch.
        """
        events = [  # (row, position of the new event, ranked?)
            (r, j, self._next_is_ranked())
            for r, n in zip(rows, n_new, strict=True)
            for j in range(len(r) - n, len(r))
        ]
        model = self.model
        model.eval()
        counting = model.has_priors
        ranks: list[int] = []
        for start in range(0, len(events), 64):
            block = events[start : start + 64]
            ranked = [(r, j) for r, j, rank_it in block if rank_it]
            priors = []
            for r, j, rank_it in block:
                if not counting:
                    break
                prev = r[j - 1] if j else 0
                if rank_it:
                    last = torch.tensor([prev], device=self.device)
                    priors.append(model.prior_scores(last)[0])
                model.observe(prev, r[j])
            if ranked:
                ranks.extend(
                    self._ranks(ranked, torch.stack(priors) if priors else None)
                )
        return ranks

    def _next_is_ranked(self) -> bool:
        self._eval_counter += 1
        return self._eval_counter % self.config.eval_every == 0

    @torch.no_grad()
    def _ranks(
        self, events: list[tuple[list[int], int]], priors: torch.Tensor | None
    ) -> list[int]:
        """Ranks of the events ``(row, j)``: item ``row[j]`` after ``row[:j]``;
        ``priors`` (b, N + 1), when given, replaces the model's own count priors."""
        T = self.block_size
        seqs = self._pad([r[max(0, j - T) : j] for r, j in events])  # (b, T)
        width = max(1, max(j for _, j in events))
        seen = torch.zeros(len(events), width, dtype=torch.long)
        for b, (r, j) in enumerate(events):
            if j:
                seen[b, :j] = torch.tensor(r[:j], dtype=torch.long)
        seen = seen.to(self.device)
        tgt = torch.tensor([r[j] for r, j in events], device=self.device)
        scores = self.model.score_last(seqs, priors=priors is None)  # (b, N + 1)
        if priors is not None:
            scores += priors
        scores[:, len(self.vocab) + 1 :] = float("-inf")  # rows not (yet) in use
        target_score = scores.gather(1, tgt[:, None])  # (b, 1)
        scores.scatter_(1, seen, float("-inf"))  # seen items (and padding)
        rank = (scores > target_score).sum(dim=1)
        # A seen target cannot be recommended: a miss.
        was_seen = (seen == tgt[:, None]).any(dim=1)
        rank = torch.where(was_seen, torch.full_like(rank, MISS), rank)
        return rank.tolist()

    def _replay_sample(self, exclude: set[str]) -> list[list[int]]:
        n = min(self.config.replay_per_step, len(self.replay))
        if n == 0:
            return []
        # Listing the keys is O(replay_size): about 0.5 ms per step at the
        # default 20 000, against 100-300 ms for the step itself.
        users = self._rng.sample(list(self.replay), n)
        out = []
        for user in users:
            if user in exclude:
                continue
            rows = [r for r in (self.vocab.lookup(i) for i in self.replay[user]) if r]
            if len(rows) >= 2:
                out.append(rows)
        return out

    def _pad(self, seqs: list[list[int]]) -> torch.Tensor:
        """Left-pad (and cut) row lists to (B, T) on the device."""
        T = self.block_size
        out = torch.zeros(len(seqs), T, dtype=torch.long)
        for b, s in enumerate(seqs):
            s = s[-T:]
            if s:
                out[b, T - len(s) :] = torch.tensor(s, dtype=torch.long)
        return out.to(self.device)

    # --- the growing item table ----------------------------------------------

    @torch.no_grad()
    def _grow(self, n_items: int) -> None:
        old_param = self.model.tok_emb.weight
        old_n = self.model.n_items
        self.model.grow_items(n_items)
        new_param = self.model.tok_emb.weight
        for group in self.optimizer.param_groups:
            group["params"] = [
                new_param if p is old_param else p for p in group["params"]
            ]
        state = self.optimizer.state.pop(old_param, None)
        if state:
            for key in ("exp_avg", "exp_avg_sq"):
                old = state[key]
                grown = torch.zeros_like(new_param)
                grown[: old_n + 1] = old[: old_n + 1]
                grown[n_items + 1] = old[old_n + 1]  # the spare id moved
                state[key] = grown
            self.optimizer.state[new_param] = state

    @torch.no_grad()
    def _reset_rows(self, rows: list[int]) -> None:
        idx = torch.tensor(rows, device=self.device)
        weight = self.model.tok_emb.weight
        weight[idx] = (
            torch.randn(
                len(rows), weight.shape[1], device=self.device, generator=self._gen
            )
            * self.model.config.init_std
        )
        state = self.optimizer.state.get(weight)
        if state:
            state["exp_avg"][idx] = 0.0
            state["exp_avg_sq"][idx] = 0.0
        self.model.forget_counts(idx)

    def warm_start(
        self,
        state_dict: dict,
        vocab: list[str],
        config: dict,
        overrides: dict | None = None,
    ) -> None:
        """Start from a published model: its weights, vocabulary and shape.

        The optimizer starts afresh; the streaming options stay as configured,
        the count priors included: a prior the model was published without
        starts from no counts, one it had but this trainer does not use is
        dropped. ``overrides`` (model options set for this trainer) replace the
        published model's :data:`LOSS_OPTIONS`.
        """
        mine = self.model.config
        model_config = replace(
            ELCRecConfig.from_dict(config),
            **{name: getattr(mine, name) for name in PRIOR_OPTIONS},
            **{k: v for k, v in (overrides or {}).items() if k in LOSS_OPTIONS},
        )
        self.model = ELCRec(model_config).to(self.device)
        own = self.model.state_dict()
        kept = {k: v for k, v in state_dict.items() if k in own}
        self.model.load_state_dict({**own, **kept})
        self.optimizer = self._make_optimizer()
        self.vocab.load_state({"ids": list(vocab), "last_seen": [0] * len(vocab)})
        if len(self.vocab) > self.config.vocab_capacity:
            raise ConfigError(
                f"the warm-start model has {len(vocab)} items, more than "
                f"vocab_capacity={self.config.vocab_capacity}"
            )

    def set_loss_options(self, options: dict) -> None:
        """Change model options of the loss only (:data:`LOSS_OPTIONS`)."""
        unknown = set(options) - set(LOSS_OPTIONS)
        if unknown:
            raise ValueError(f"not loss options: {sorted(unknown)}")
        if options:
            self.model.config = replace(self.model.config, **options)

    # --- state -----------------------------------------------------------------

    def live_metrics(self) -> dict[str, float]:
        """Prequential HR@k / NDCG@k over the sliding window."""
        return self.metrics.get()

    @torch.no_grad()
    def intent_items(self, n: int = 5) -> dict[int, list[str]]:
        """Each intent's ``n`` most representative items: the item embeddings
        with the largest dot product with its center."""
        n_known = len(self.vocab)
        if n_known == 0:
            return {}
        emb = self.model.item_vectors[1 : n_known + 1]  # (N, C)
        scores = self.model.centers @ emb.T  # (K, N)
        top = scores.topk(min(n, n_known), dim=1).indices + 1  # rows
        return {
            k: [self.vocab.ids[r - 1] for r in row.tolist()]
            for k, row in enumerate(top)
        }

    def parameters_finite(self) -> bool:
        return all(bool(torch.isfinite(p).all()) for p in self.model.parameters())

    def published_state(self) -> tuple[dict, list[str], dict]:
        """``(state_dict, vocab, config)`` as :func:`elcrec.publish.publish_model` takes."""
        return (
            self.model.state_dict(),
            list(self.vocab.ids),
            self.model.config.to_dict(),
        )

    def state_dict(self, copy: bool = False) -> dict:
        """Everything needed to resume exactly (plain types and tensors only).

        ``copy``: the weights and optimizer moments are copied, so the result
        can be written by another thread while this one keeps learning (the
        other parts are fresh lists already; replayed sequences are replaced,
        never changed in place).
        """
        model, optimizer = self.model.state_dict(), self.optimizer.state_dict()
        if copy:
            model = _cloned(model)
            optimizer = _cloned(optimizer)
        return {
            "model_config": self.model.config.to_dict(),
            "online_config": asdict(self.config),
            "model": model,
            "optimizer": optimizer,
            "vocab": self.vocab.state(),
            "replay": [[u, items] for u, items in self.replay.items()],
            "metrics": self.metrics.state(),
            "step": self.step,
            "events_seen": self.events_seen,
            "skipped_steps": self.skipped_steps,
            "eval_counter": self._eval_counter,
            "python_rng": _rng_to_plain(self._rng.getstate()),
            "torch_rng": self._gen.get_state(),
            "cpu_rng": torch.get_rng_state(),
        }

    def reconfigure(self, config: OnlineConfig) -> dict[str, tuple]:
        """Take the learning options of ``config`` (a resumed trainer follows
        the settings it is started with); returns ``{option: (old, new)}``.

        The seed is not taken (the random state is resumed), nor a
        ``vocab_capacity`` below the rows in use.
        """
        changed = {}
        for f in fields(OnlineConfig):
            old, new = getattr(self.config, f.name), getattr(config, f.name)
            if old == new or f.name == "seed":
                continue
            if f.name == "vocab_capacity" and new < len(self.vocab):
                logger.warning(
                    "Keeping vocab_capacity=%d: %d item rows are in use (asked %d)",
                    old,
                    len(self.vocab),
                    new,
                )
                continue
            changed[f.name] = (old, new)
        self.config = replace(self.config, **{k: v for k, (_, v) in changed.items()})
        if "lr" in changed:
            for group in self.optimizer.param_groups:
                group["lr"] = self.config.lr
        if "vocab_capacity" in changed:
            self.vocab.capacity = self.config.vocab_capacity
        if "metrics_window" in changed:
            ranks = self.metrics.state()
            self.metrics = SlidingMetrics(self.config.metrics_window)
            self.metrics.load_state(ranks)
        while len(self.replay) > self.config.replay_size:
            self.replay.popitem(last=False)
        return changed

    @classmethod
    def from_state_dict(
        cls, state: dict, device: str | torch.device = "cpu"
    ) -> OnlineTrainer:
        model_config = ELCRecConfig.from_dict(state["model_config"])
        trainer = cls(model_config, OnlineConfig(**state["online_config"]), device)
        trainer.model = ELCRec(model_config).to(trainer.device)
        trainer.model.load_state_dict(state["model"])
        trainer.optimizer = trainer._make_optimizer()
        trainer.optimizer.load_state_dict(state["optimizer"])
        trainer.vocab.load_state(state["vocab"])
        trainer.replay = OrderedDict((u, list(items)) for u, items in state["replay"])
        trainer.metrics.load_state(state["metrics"])
        trainer.step = state["step"]
        trainer.events_seen = state["events_seen"]
        trainer.skipped_steps = state["skipped_steps"]
        trainer._eval_counter = state["eval_counter"]
        trainer._rng.setstate(_rng_from_plain(state["python_rng"]))
        trainer._gen.set_state(state["torch_rng"])
        torch.set_rng_state(state["cpu_rng"])
        return trainer

    def save_checkpoint(self, path: str | Path, extra: dict | None = None) -> None:
        """Write the trainer state (and ``extra``, plain types) atomically."""
        write_checkpoint(path, self.state_dict(), extra)

    @classmethod
    def load_checkpoint(
        cls, path: str | Path, device: str | torch.device = "cpu"
    ) -> tuple[OnlineTrainer, dict]:
        """Resume from :meth:`save_checkpoint`; returns ``(trainer, extra)``."""
        blob = torch.load(Path(path), map_location=device, weights_only=True)
        return cls.from_state_dict(blob["trainer"], device), blob["extra"]


def write_checkpoint(path: str | Path, state: dict, extra: dict | None = None) -> None:
    """Write a trainer ``state`` (:meth:`OnlineTrainer.state_dict`) and ``extra``
    atomically: readers find the previous checkpoint or this one, whole."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    t0 = time.monotonic()
    torch.save({"trainer": state, "extra": extra or {}}, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    tmp.replace(path)
    logger.debug("Saved checkpoint path=%s seconds=%.2f", path, time.monotonic() - t0)


def _cloned(value):
    """``value`` with every tensor in its dicts and lists copied."""
    if isinstance(value, torch.Tensor):
        return value.detach().clone()
    if isinstance(value, dict):
        return {k: _cloned(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return type(value)(_cloned(v) for v in value)
    return value


def _windows(row: list[int], n_new: int, T: int) -> list[list[int]]:
    """Training windows of at most ``T + 1`` items whose targets (all but the
    first item) cover the last ``n_new`` items of ``row``, newest first.

    >>> _windows([1, 2, 3, 4, 5, 6], n_new=5, T=2)
    [[4, 5, 6], [2, 3, 4], [1, 2]]
    >>> _windows([1, 2, 3, 4, 5, 6], n_new=1, T=2)
    [[4, 5, 6]]
    """
    out = []
    end, first = len(row), len(row) - n_new
    while end >= 2:
        start = max(0, end - (T + 1))
        out.append(row[start:end])
        if start < first:
            break
        end = start + 1
    return out


def _rng_to_plain(state: tuple) -> list:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _rng_from_plain(state: list) -> tuple:
    version, internal, gauss = state
    return (version, tuple(internal), gauss)
