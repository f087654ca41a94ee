"""Loading published models for serving: ``Recommender``.

A downstream recommender holds one :class:`Recommender`; it loads the newest
published version (checksums verified) and, when ``auto_reload`` is on, notices a
newer ``LATEST`` and swaps to it. The new model is loaded completely before the
swap, so requests keep being answered by the old one meanwhile: no gap.

Example::

    from elcrec import Recommender

    rec = Recommender.latest("elcrec-work/trainer/models")
    rec.recommend(["i12", "i7", "i99"], k=10)   # [("i13", 4.2), ...]
    rec.intent(["i12", "i7", "i99"])            # (17, 0.83)
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import torch

from elcrec.model import ELCRec, ELCRecConfig
from elcrec.publish import ModelManifest, PublishError, latest_version, read_model

logger = logging.getLogger(__name__)


class _Loaded:
    """One loaded version: model, vocabulary and manifest, never mutated."""

    def __init__(self, version_dir: Path, device: torch.device):
        manifest, state_dict, vocab, config = read_model(version_dir)
        model = ELCRec(ELCRecConfig.from_dict(config)).to(device)
        model.load_state_dict(state_dict)
        model.eval()
        self.manifest: ModelManifest = manifest
        self.model = model
        self.vocab: list[str] = vocab
        self.rows = {item: i + 1 for i, item in enumerate(vocab)}


class Recommender:
    """Top-k items and intents from the newest published model.

    Args:
        models_dir: the directory of published versions (holding ``LATEST``).
        auto_reload: check ``LATEST`` at most every ``reload_interval_s``
            seconds and load a newer version when there is one.
        device: where to run the model.

    Raises:
        PublishError: nothing is published yet, or the version fails its checks.
    """

    def __init__(
        self,
        models_dir: str | Path,
        auto_reload: bool = True,
        reload_interval_s: float = 1.0,
        device: str = "cpu",
    ):
        self.models_dir = Path(models_dir)
        self.auto_reload = auto_reload
        self.reload_interval_s = reload_interval_s
        self.device = torch.device(device)
        self._lock = threading.Lock()
        name = latest_version(self.models_dir)
        if name is None:
            raise PublishError(f"{self.models_dir}: no published model (no LATEST)")
        self._failed: str | None = None
        self._current = _Loaded(self.models_dir / name, self.device)
        self._checked_at = time.monotonic()
        logger.info("Loaded model version=%s dir=%s", name, self.models_dir)

    @classmethod
    def latest(cls, models_dir: str | Path, **kwargs) -> Recommender:
        """The recommender of the newest version under ``models_dir``."""
        return cls(models_dir, **kwargs)

    @property
    def version(self) -> str:
        return self._current.manifest.version

    @property
    def manifest(self) -> ModelManifest:
        return self._current.manifest

    def reload(self) -> bool:
        """Load the version ``LATEST`` names if it is newer; True if swapped.

        A version that fails its checks is logged and skipped; the current one
        stays in service.
        """
        self._checked_at = time.monotonic()
        name = latest_version(self.models_dir)
        # A version that failed to load is not read again until a newer one.
        if name is None or name == self.version or name == self._failed:
            return False
        with self._lock:
            if name == self.version:
                return False
            try:
                loaded = _Loaded(self.models_dir / name, self.device)
            except (PublishError, OSError) as exc:
                self._failed = name
                logger.warning(
                    "Keeping model version=%s, the newer one failed to load "
                    "version=%s error=%s",
                    self.version,
                    name,
                    exc,
                )
                return False
            self._current = loaded  # one reference swap: requests never wait
        logger.info("Reloaded model version=%s", name)
        return True

    def _model(self) -> _Loaded:
        if (
            self.auto_reload
            and time.monotonic() - self._checked_at >= self.reload_interval_s
        ):
            self.reload()
        return self._current

    def _encode(self, m: _Loaded, item_ids: list[str]) -> torch.Tensor:
        """(1, T) left-padded rows of the known items (unknown ones dropped)."""
        if isinstance(item_ids, (str, bytes)):
            raise TypeError(
                "item_ids is a list of item ids, oldest first, not one string"
            )
        T = m.model.config.block_size
        # Ids are strings on the wire; numbers are taken as their decimal text.
        ids = [str(i) if isinstance(i, int) else i for i in item_ids]
        rows = [m.rows[i] for i in ids if i in m.rows][-T:]
        seqs = torch.zeros(1, T, dtype=torch.long)
        if rows:
            seqs[0, T - len(rows) :] = torch.tensor(rows)
        return seqs.to(self.device)

    @torch.no_grad()
    def recommend(
        self, item_ids: list[str], k: int = 10, exclude_seen: bool = True
    ) -> list[tuple[str, float]]:
        """The ``k`` best next items after ``item_ids`` (oldest first), with scores."""
        if not isinstance(k, int) or k < 0:
            raise ValueError(f"k must be an integer >= 0, got {k!r}")
        m = self._model()
        seqs = self._encode(m, item_ids)
        scores = m.model.score_last(seqs)[0]  # (N + 1,)
        scores[len(m.vocab) + 1 :] = float("-inf")  # rows not in the vocabulary
        if exclude_seen:
            scores[seqs[0]] = float("-inf")
        k = max(0, min(k, len(m.vocab) - (len(set(item_ids)) if exclude_seen else 0)))
        top = torch.topk(scores, k)
        return [
            (m.vocab[int(row) - 1], float(score))
            for score, row in zip(top.values, top.indices, strict=True)
            if torch.isfinite(score)
        ]

    @torch.no_grad()
    def intent(self, item_ids: list[str]) -> tuple[int, float]:
        """The intent of a sequence and its weight (cosine to the center)."""
        m = self._model()
        seqs = self._encode(m, item_ids)
        if not bool((seqs > 0).any()):
            raise ValueError("intent() needs at least one item the model knows")
        k, weight = m.model.assign(seqs)
        return int(k[0]), float(weight[0])

    def recommend_user(self, user_id: str, sequences, k: int = 10):
        """Recommend for a user whose sequence ``sequences.get(user_id)`` gives.

        ``sequences`` is anything with ``get(user_id)`` returning an object
        with ``items`` (the state store's readers) or None.
        """
        seq = sequences.get(user_id)
        return self.recommend(list(seq.items) if seq is not None else [], k)
