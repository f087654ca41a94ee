"""Offline training and evaluation with the leave-one-out protocol.

For a user sequence ``s``: training inputs ``s[:-3]`` with targets ``s[1:-2]``;
validation predicts ``s[-2]`` from ``s[:-2]``; test predicts ``s[-1]`` from
``s[:-1]``. Every item is ranked; items already in the user's input are
excluded. Users with fewer than 3 items cannot be evaluated: they are kept out
of evaluation (and counted in a log line) but still train on their whole
sequence.

The trainer runs epochs with early stopping on validation NDCG@20, writes the
best and the last checkpoint (model, optimizer, configs, vocabulary, epoch,
random states) and resumes exactly from either. Baselines share the harness:
most-popular (:func:`most_popular`) and plain SASRec (the ELCRec encoder with
every intent loss off, ``ELCRecConfig.sasrec()``).
"""

from __future__ import annotations

import logging
import math
import os
import sys
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import numpy as np
import torch

from elcrec.data import SequenceData
from elcrec.exceptions import ConfigError, DataError, ElcrecError
from elcrec.metrics import RankAccumulator, target_ranks
from elcrec.model import ELCRec, ELCRecConfig

logger = logging.getLogger(__name__)

METRIC = "ndcg@20"  # early stopping and best checkpoint follow this metric


class TrainingError(ElcrecError):
    """Training diverged (a loss became NaN or infinite)."""


@dataclass(frozen=True)
class TrainConfig:
    """Optimisation and harness settings; defaults are the paper's."""

    epochs: int = 300
    batch_size: int = 256
    lr: float = 1e-3
    beta1: float = 0.9
    beta2: float = 0.999
    weight_decay: float = 0.0
    patience: int = 40  # epochs without validation NDCG@20 improving
    seed: int = 1
    device: str = "auto"  # "auto": CUDA when present, else CPU
    eval_batch_size: int = 1024
    item_chunk: int = 16384

    def __post_init__(self):
        positive = ("epochs", "batch_size", "patience", "eval_batch_size", "item_chunk")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, got {value!r}")
        if not self.lr > 0:
            raise ConfigError(f"lr must be > 0, got {self.lr!r}")
        for name in ("beta1", "beta2"):
            if not 0 <= getattr(self, name) < 1:
                raise ConfigError(
                    f"{name} must be in [0, 1), got {getattr(self, name)}"
                )
        if self.weight_decay < 0:
            raise ConfigError(f"weight_decay must be >= 0, got {self.weight_decay}")
        if self.device not in ("auto", "cpu") and not self.device.startswith("cuda"):
            raise ConfigError(
                f"device must be auto, cpu or cuda[:N], got {self.device!r}"
            )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in known})


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"device {name!r} asked for but CUDA is not available")
    return torch.device(name)


# ---------------------------------------------------------------------------
# the leave-one-out split


def left_pad(seqs: list[list[int]], width: int) -> torch.Tensor:
    """The last ``width`` items of each list, left-padded with 0: (len(seqs), width)."""
    out = np.zeros((len(seqs), width), dtype=np.int64)
    for row, s in enumerate(seqs):
        tail = s[-width:] if width else []
        if tail:
            out[row, width - len(tail) :] = tail
    return torch.from_numpy(out)


@dataclass
class EvalSet:
    """Users to evaluate: inputs (U, T), held-out targets (U,), seen items (U, S)."""

    inputs: torch.Tensor
    targets: torch.Tensor
    seen: torch.Tensor

    def __len__(self) -> int:
        return self.targets.numel()


@dataclass
class LeaveOneOut:
    """Training tensors and the validation and test sets of a data set."""

    n_items: int
    train_inputs: torch.Tensor  # (U, T)
    train_targets: torch.Tensor  # (U, T), 0 where there is no target
    valid: EvalSet
    test: EvalSet
    n_short: int  # users kept out of evaluation (fewer than 3 items)
    # item counts in the validation inputs (s[:-2]) and test inputs (s[:-1])
    counts_valid: torch.Tensor
    counts_test: torch.Tensor

    @classmethod
    def from_sequences(cls, data: SequenceData, block_size: int) -> LeaveOneOut:
        if data.n_users == 0 or data.n_items == 0:
            raise DataError("the data set has no interactions")
        tr_in, tr_out = [], []
        va_in, va_t, te_in, te_t = [], [], [], []
        n_short = 0
        for s in data.sequences:
            if len(s) < 3:
                n_short += 1
                if len(s) >= 2:  # not evaluated: train on the whole sequence
                    tr_in.append(s[:-1])
                    tr_out.append(s[1:])
                continue
            if len(s) >= 4:
                tr_in.append(s[:-3])
                tr_out.append(s[1:-2])
            va_in.append(s[:-2])
            va_t.append(s[-2])
            te_in.append(s[:-1])
            te_t.append(s[-1])
        if n_short:
            logger.info(
                "Users kept out of evaluation (fewer than 3 items) n=%d of users=%d",
                n_short,
                data.n_users,
            )
        if not va_t:
            raise DataError("no user has the 3 items the leave-one-out protocol needs")
        if not tr_in:
            raise DataError("no user has the 4 items needed for a training sequence")

        def eval_set(inputs, targets):
            longest = max(len(s) for s in inputs)
            return EvalSet(
                inputs=left_pad(inputs, block_size),
                targets=torch.tensor(targets, dtype=torch.long),
                seen=left_pad(inputs, longest),
            )

        def counts(seqs):
            flat = torch.tensor([i for s in seqs for i in s], dtype=torch.long)
            return torch.bincount(flat, minlength=data.n_items + 1).float()

        return cls(
            n_items=data.n_items,
            train_inputs=left_pad(tr_in, block_size),
            train_targets=left_pad(tr_out, block_size),
            valid=eval_set(va_in, va_t),
            test=eval_set(te_in, te_t),
            n_short=n_short,
            counts_valid=counts(va_in),
            counts_test=counts(te_in),
        )

    def eval_set(self, split: str) -> EvalSet:
        if split not in ("valid", "test"):
            raise ConfigError(f"split must be 'valid' or 'test', got {split!r}")
        return self.valid if split == "valid" else self.test


def remap_items(data: SequenceData, items: list[str]) -> SequenceData:
    """Re-index ``data`` onto a model's item vocabulary, dropping unknown items."""
    index = {item: i + 1 for i, item in enumerate(items)}
    unknown = 0
    sequences = []
    for s in data.sequences:
        mapped = [index.get(data.items[i - 1], 0) for i in s]
        unknown += sum(1 for i in mapped if i == 0)
        sequences.append([i for i in mapped if i])
    if unknown:
        logger.warning(
            "Interactions with items unknown to the model were dropped n=%d", unknown
        )
    return SequenceData(users=data.users, items=list(items), sequences=sequences)


# ---------------------------------------------------------------------------
# evaluation


@torch.no_grad()
def evaluate_model(
    model: ELCRec, eval_set: EvalSet, batch_size: int = 1024, item_chunk: int = 16384
) -> dict[str, float]:
    """HR@k and NDCG@k (k = 5, 10, 20) of the model's last-position scores."""
    was_training = model.training
    model.eval()
    dev = model.tok_emb.weight.device
    items = model.tok_emb.weight[: model.n_items + 1]  # (N + 1, C), padding row 0
    acc = RankAccumulator()
    for start in range(0, len(eval_set), batch_size):
        stop = start + batch_size
        x = eval_set.inputs[start:stop].to(dev)
        q = model.with_bias(model.encode(x)[:, -1, :])  # (B, C) last state
        ranks = target_ranks(
            q,
            items,
            eval_set.targets[start:stop].to(dev),
            eval_set.seen[start:stop].to(dev),
            item_chunk,
        )
        acc.update(ranks)
    model.train(was_training)
    return acc.result


def most_popular(split: LeaveOneOut, which: str = "test", batch_size: int = 4096):
    """The most-popular baseline: items ranked by their count in the inputs."""
    counts = split.counts_valid if which == "valid" else split.counts_test
    eval_set = split.eval_set(which)
    vectors = counts.unsqueeze(1)  # (N + 1, 1): score = 1 * count
    acc = RankAccumulator()
    for start in range(0, len(eval_set), batch_size):
        stop = start + batch_size
        q = torch.ones(eval_set.targets[start:stop].numel(), 1)
        acc.update(
            target_ranks(
                q, vectors, eval_set.targets[start:stop], eval_set.seen[start:stop]
            )
        )
    return acc.result


# ---------------------------------------------------------------------------
# the trainer


class OfflineTrainer:
    """Epoch loop with early stopping, checkpoints and exact resume.

    Args:
        model_config: the model; ``n_items`` is taken from the data.
        train_config: optimisation and harness settings.
        split: the leave-one-out tensors.
        items: the item vocabulary (external ids of items 1..N), saved with
            every checkpoint so evaluation can re-index other files.
        out_dir: where ``best.pt`` and ``last.pt`` go; None writes nothing.
    """

    def __init__(
        self,
        model_config: ELCRecConfig,
        train_config: TrainConfig,
        split: LeaveOneOut,
        items: list[str],
        out_dir: str | Path | None = None,
    ):
        self.config = train_config
        self.split = split
        self.items = list(items)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.device = resolve_device(train_config.device)

        torch.manual_seed(train_config.seed)  # weights and dropout
        model_config = ELCRecConfig.from_dict(
            {**model_config.to_dict(), "n_items": split.n_items}
        )
        self.model = ELCRec(model_config).to(self.device)
        self.optimizer = torch.optim.Adam(
            self.model.parameters(),
            lr=train_config.lr,
            betas=(train_config.beta1, train_config.beta2),
            weight_decay=train_config.weight_decay,
        )
        # batches, augmentations and negatives draw from this generator only
        self.generator = torch.Generator(device=self.device)
        self.generator.manual_seed(train_config.seed)

        self.epoch = 0  # epochs completed
        self.step_count = 0
        self.best_metric = -math.inf
        self.best_epoch = 0
        self.bad_epochs = 0
        self.history: list[dict] = []

    # --- one step, one epoch -----------------------------------------------

    def init_centers(self) -> None:
        """k-means++ on the training sequences' intent vectors (eval mode)."""
        model = self.model
        was_training = model.training
        model.eval()
        with torch.no_grad():
            z = torch.cat(
                [
                    model.intent_vectors(x.to(self.device))
                    for x in self.split.train_inputs.split(self.config.eval_batch_size)
                ]
            )
        model.init_centers(z, generator=self.generator)
        model.train(was_training)

    def step(self, inputs: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
        """One optimizer step on a batch; returns the loss values."""
        self.model.train()
        losses = self.model.losses(
            inputs.to(self.device), targets.to(self.device), generator=self.generator
        )
        total = losses["total"]
        if not torch.isfinite(total):
            values = {k: float(v.detach()) for k, v in losses.items()}
            raise TrainingError(
                f"non-finite loss at epoch {self.epoch + 1} step {self.step_count}: "
                f"{values}; lower --lr or the loss weights"
            )
        self.optimizer.zero_grad(set_to_none=True)
        total.backward()
        self.optimizer.step()
        self.model.renormalize_centers()
        self.step_count += 1
        return {k: float(v.detach()) for k, v in losses.items()}

    def batches(self):
        """This epoch's shuffled (inputs, targets) batches."""
        n = self.split.train_inputs.shape[0]
        perm = torch.randperm(n, generator=self.generator, device=self.device).cpu()
        for idx in perm.split(self.config.batch_size):
            yield self.split.train_inputs[idx], self.split.train_targets[idx]

    def train_epoch(self, progress: bool = False) -> dict[str, float]:
        """One pass over the training sequences; returns mean losses."""
        if self.model.config.uses_intents and not bool(self.model.centers_ready):
            self.init_centers()
        sums: dict[str, float] = {}
        n = 0
        bar = _progress(
            self.batches(),
            total=math.ceil(len(self.split.train_targets) / self.config.batch_size),
            desc=f"epoch {self.epoch + 1}",
            enabled=progress,
        )
        for inputs, targets in bar:
            values = self.step(inputs, targets)
            n += 1
            for k, v in values.items():
                sums[k] = sums.get(k, 0.0) + v
            if progress and n % 10 == 0:
                bar.set_postfix({k: f"{v / n:.4f}" for k, v in sums.items()})
        self.epoch += 1
        return {k: v / max(n, 1) for k, v in sums.items()}

    def evaluate(self, split: str = "valid") -> dict[str, float]:
        return evaluate_model(
            self.model,
            self.split.eval_set(split),
            self.config.eval_batch_size,
            self.config.item_chunk,
        )

    # --- the loop ------------------------------------------------------------

    def fit(self, progress: bool = False, on_epoch=None) -> dict:
        """Train until ``epochs`` or early stopping; returns a summary.

        ``on_epoch(record)``, if given, is called after each epoch's validation
        with that epoch's history record.

        The summary holds the best epoch, its validation metrics, the history
        of (epoch, losses, validation metrics, seconds) and time per epoch.
        """
        cfg = self.config
        t_fit = time.perf_counter()
        while self.epoch < cfg.epochs and self.bad_epochs < cfg.patience:
            t0, c0 = time.perf_counter(), time.process_time()
            losses = self.train_epoch(progress)
            t1, c1 = time.perf_counter(), time.process_time()
            valid = self.evaluate("valid")
            t2 = time.perf_counter()
            record = {
                "epoch": self.epoch,
                "losses": losses,
                "valid": valid,
                "train_s": t1 - t0,
                "eval_s": t2 - t1,
                # CPU seconds of this process: comparable on a shared machine
                "train_cpu_s": c1 - c0,
                "eval_cpu_s": time.process_time() - c1,
            }
            self.history.append(record)
            improved = valid[METRIC] > self.best_metric
            if improved:
                self.best_metric, self.best_epoch, self.bad_epochs = (
                    valid[METRIC],
                    self.epoch,
                    0,
                )
            else:
                self.bad_epochs += 1
            logger.info(
                "Epoch done epoch=%d loss=%.4f rec=%.4f valid_hr@20=%.4f "
                "valid_ndcg@20=%.4f best_epoch=%d train_s=%.1f eval_s=%.1f",
                self.epoch,
                losses["total"],
                losses["rec"],
                valid["hr@20"],
                valid["ndcg@20"],
                self.best_epoch,
                t1 - t0,
                t2 - t1,
            )
            if self.out_dir is not None:
                if improved:
                    self.save(self.out_dir / "best.pt")
                self.save(self.out_dir / "last.pt")
            if on_epoch is not None:
                on_epoch(record)
        if self.bad_epochs >= cfg.patience:
            logger.info(
                "Early stop epoch=%d best_epoch=%d patience=%d",
                self.epoch,
                self.best_epoch,
                cfg.patience,
            )
        return {
            "epochs": self.epoch,
            "best_epoch": self.best_epoch,
            "best_valid": next(
                (h["valid"] for h in self.history if h["epoch"] == self.best_epoch), {}
            ),
            "history": self.history,
            "fit_s": time.perf_counter() - t_fit,
        }

    # --- checkpoints -----------------------------------------------------------

    def state(self) -> dict:
        rng = {"torch": torch.get_rng_state(), "generator": self.generator.get_state()}
        if self.device.type == "cuda":
            rng["cuda"] = torch.cuda.get_rng_state(self.device)
        return {
            "format": 1,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "model_config": self.model.config.to_dict(),
            "train_config": self.config.to_dict(),
            "items": self.items,
            "epoch": self.epoch,
            "step": self.step_count,
            "best_metric": self.best_metric,
            "best_epoch": self.best_epoch,
            "bad_epochs": self.bad_epochs,
            "history": self.history,
            "rng": rng,
        }

    def save(self, path: str | Path) -> None:
        """Write a checkpoint atomically (temporary name, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    @classmethod
    def resume(
        cls,
        path: str | Path,
        split: LeaveOneOut,
        out_dir: str | Path | None = None,
        **train_overrides,
    ) -> OfflineTrainer:
        """A trainer in exactly the state the checkpoint was written in."""
        ckpt = load_checkpoint(path)
        train_config = TrainConfig.from_dict(
            {**ckpt["train_config"], **train_overrides}
        )
        model_config = ELCRecConfig.from_dict(ckpt["model_config"])
        if model_config.n_items != split.n_items:
            raise DataError(
                f"{path}: the checkpoint has {model_config.n_items} items, the data "
                f"{split.n_items}; resume on the data set it was trained on"
            )
        trainer = cls(model_config, train_config, split, ckpt["items"], out_dir)
        trainer.model.load_state_dict(ckpt["model"])
        trainer.optimizer.load_state_dict(ckpt["optimizer"])
        trainer.epoch = ckpt["epoch"]
        trainer.step_count = ckpt["step"]
        trainer.best_metric = ckpt["best_metric"]
        trainer.best_epoch = ckpt["best_epoch"]
        trainer.bad_epochs = ckpt["bad_epochs"]
        trainer.history = ckpt["history"]
        torch.set_rng_state(ckpt["rng"]["torch"])
        trainer.generator.set_state(ckpt["rng"]["generator"])
        if "cuda" in ckpt["rng"] and trainer.device.type == "cuda":
            torch.cuda.set_rng_state(ckpt["rng"]["cuda"], trainer.device)
        return trainer


def load_checkpoint(path: str | Path) -> dict:
    """Read a checkpoint written by :meth:`OfflineTrainer.save` (tensors only)."""
    path = Path(path)
    if path.is_dir():
        path = path / "best.pt"
    if not path.is_file():
        raise DataError(f"{path}: no checkpoint there (expected best.pt in --model)")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise DataError(f"{path}: not a readable elcrec checkpoint ({exc})") from exc


def load_model(path: str | Path, device: str = "cpu") -> tuple[ELCRec, list[str]]:
    """The model of a checkpoint and its item vocabulary, ready for inference."""
    ckpt = load_checkpoint(path)
    model = ELCRec(ELCRecConfig.from_dict(ckpt["model_config"]))
    model.load_state_dict(ckpt["model"])
    model.to(resolve_device(device)).eval()
    return model, ckpt["items"]


def _progress(iterable, total: int, desc: str, enabled: bool):
    if not enabled:
        return _NoBar(iterable)
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr)


class _NoBar:
    def __init__(self, iterable):
        self._it = iterable

    def __iter__(self):
        return iter(self._it)

    def set_postfix(self, *_args, **_kwargs):
        pass
