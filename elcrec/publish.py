"""Versioned, atomically published model directories.

Layout under a models directory::

    models/
      LATEST                 the name of the newest complete version, e.g. "v000012"
      v000011/ v000012/      one directory per version
        weights.pt           the model's state dict (torch.save; load with weights_only=True)
        vocab.json           external item ids; row i+1 of the item embedding is vocab[i]
        config.json          the model configuration (ELCRecConfig.to_dict())
        manifest.json        ModelManifest: version, parent, steps, metrics, checksums

A version is written under a temporary name, flushed to disk, then renamed into
place, and only then is ``LATEST`` replaced (also by rename). A reader therefore
sees either the previous complete version or the new complete one, never a
partial directory; a crash mid-write leaves a ``.tmp-*`` folder that the next
publish removes. The manifest holds the SHA-256 of every file and a checksum over
them, which :func:`read_model` verifies.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
from datetime import UTC, datetime
from pathlib import Path

import torch
from pydantic import BaseModel, Field

from elcrec.exceptions import ElcrecError

logger = logging.getLogger(__name__)

LATEST = "LATEST"
FILES = ("weights.pt", "vocab.json", "config.json")
_VERSION_RE = re.compile(r"^v(\d{6,})$")


class PublishError(ElcrecError):
    """A published model is missing, partial or fails its checksum."""


class ModelManifest(BaseModel):
    """What a published model is, where it came from and how good it was live."""

    version: str
    created_at: datetime
    parent_version: str | None = None
    steps: int = 0
    events_seen: int = 0
    records_learned: int = 0
    n_items: int = 0
    live_metrics: dict[str, float] = Field(default_factory=dict)
    source_offsets: dict[str, int] = Field(default_factory=dict)
    files: dict[str, str] = Field(default_factory=dict)
    checksum: str = ""


def version_name(number: int) -> str:
    return f"v{number:06d}"


def version_number(name: str) -> int:
    match = _VERSION_RE.match(name)
    if not match:
        raise PublishError(f"{name!r} is not a model version name (vNNNNNN)")
    return int(match.group(1))


def list_versions(models_dir: str | Path) -> list[str]:
    """Complete versions in ascending order (temporary folders are skipped)."""
    models_dir = Path(models_dir)
    if not models_dir.is_dir():
        return []
    names = [
        p.name for p in models_dir.iterdir() if p.is_dir() and _VERSION_RE.match(p.name)
    ]
    return sorted(names, key=version_number)


def latest_version(models_dir: str | Path) -> str | None:
    """The version ``LATEST`` points to, or None when nothing is published."""
    try:
        name = (Path(models_dir) / LATEST).read_text().strip()
    except FileNotFoundError:
        return None
    return name or None


def publish_model(
    models_dir: str | Path,
    state_dict: dict[str, torch.Tensor],
    vocab: list[str],
    config: dict,
    *,
    steps: int = 0,
    events_seen: int = 0,
    records_learned: int = 0,
    live_metrics: dict[str, float] | None = None,
    source_offsets: dict[str, int] | None = None,
    keep: int = 5,
) -> ModelManifest:
    """Write a new version atomically, point ``LATEST`` at it, prune old ones.

    Args:
        models_dir: the models directory (created if missing).
        state_dict: the model weights (tensors only).
        vocab: external item ids in embedding-row order (row 0 is padding).
        config: the model configuration as a JSON-able dict.
        steps: optimizer steps taken so far.
        events_seen: events learned from so far.
        records_learned: input records learned from so far.
        live_metrics: prequential metrics to record in the manifest.
        source_offsets: input offsets the model has learned up to.
        keep: how many versions to keep (the newest ones; at least 1).

    Returns:
        The manifest of the new version.
    """
    models_dir = Path(models_dir)
    models_dir.mkdir(parents=True, exist_ok=True)
    for stale in models_dir.glob(".tmp-*"):
        shutil.rmtree(stale, ignore_errors=True)

    existing = list_versions(models_dir)
    parent = latest_version(models_dir)
    number = version_number(existing[-1]) + 1 if existing else 1
    name = version_name(number)

    tmp = models_dir / f".tmp-{name}-{os.getpid()}"
    tmp.mkdir()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, tmp / "weights.pt")
    _write_json(tmp / "vocab.json", list(vocab))
    _write_json(tmp / "config.json", config)

    files = {f: _sha256(tmp / f) for f in FILES}
    manifest = ModelManifest(
        version=name,
        created_at=datetime.now(UTC),
        parent_version=parent,
        steps=steps,
        events_seen=events_seen,
        records_learned=records_learned,
        n_items=len(vocab),
        live_metrics=live_metrics or {},
        source_offsets=source_offsets or {},
        files=files,
    )
    manifest.checksum = _combined(files, manifest)
    _write_json(tmp / "manifest.json", manifest.model_dump(mode="json"))
    for f in (*FILES, "manifest.json"):
        _fsync(tmp / f)

    os.rename(tmp, models_dir / name)
    _replace_text(models_dir / LATEST, name + "\n")
    _fsync_dir(models_dir)
    logger.info(
        "Published model version=%s parent=%s steps=%d events=%d items=%d",
        name,
        parent,
        steps,
        events_seen,
        len(vocab),
    )
    _prune(models_dir, keep)
    return manifest


def read_model(version_dir: str | Path) -> tuple[ModelManifest, dict, list[str], dict]:
    """Load and verify one published version.

    Returns:
        ``(manifest, state_dict, vocab, config)``.

    Raises:
        PublishError: a file is missing, or a checksum does not match.
    """
    version_dir = Path(version_dir)
    try:
        manifest = ModelManifest.model_validate_json(
            (version_dir / "manifest.json").read_text()
        )
    except FileNotFoundError:
        raise PublishError(
            f"{version_dir}: no manifest.json (not a published model)"
        ) from None
    except ValueError as exc:
        raise PublishError(f"{version_dir}/manifest.json is invalid: {exc}") from exc

    for f in FILES:
        path = version_dir / f
        if not path.is_file():
            raise PublishError(f"{version_dir}: {f} is missing")
        digest = _sha256(path)
        if digest != manifest.files.get(f):
            raise PublishError(
                f"{path}: checksum mismatch (manifest {manifest.files.get(f)}, file {digest})"
            )
    if _combined(manifest.files, manifest) != manifest.checksum:
        raise PublishError(f"{version_dir}/manifest.json: content checksum mismatch")

    state_dict = torch.load(
        version_dir / "weights.pt", map_location="cpu", weights_only=True
    )
    vocab = json.loads((version_dir / "vocab.json").read_text())
    config = json.loads((version_dir / "config.json").read_text())
    return manifest, state_dict, vocab, config


# -- helpers -------------------------------------------------------------------


def _prune(models_dir: Path, keep: int) -> None:
    keep = max(1, keep)
    current = latest_version(models_dir)
    versions = list_versions(models_dir)
    for name in versions[:-keep]:
        if name != current:
            shutil.rmtree(models_dir / name, ignore_errors=True)
            logger.debug("Removed old model version=%s", name)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _combined(files: dict[str, str], manifest: ModelManifest) -> str:
    """One checksum over every file's digest and the manifest's own fields."""
    joined = "\n".join(f"{name}:{files[name]}" for name in sorted(files))
    meta = manifest.model_dump(mode="json", exclude={"checksum", "files"})
    joined += "\n" + json.dumps(meta, sort_keys=True)
    return hashlib.sha256(joined.encode()).hexdigest()


def _write_json(path: Path, obj) -> None:
    path.write_text(json.dumps(obj, indent=1, sort_keys=True))


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _replace_text(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    tmp.write_text(text)
    _fsync(tmp)
    os.replace(tmp, path)
