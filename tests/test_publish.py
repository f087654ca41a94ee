"""Published model directories: atomic versions, checksums, pruning."""

from __future__ import annotations

import json

import pytest
import torch

from elcrec.publish import (
    PublishError,
    latest_version,
    list_versions,
    publish_model,
    read_model,
)


def _publish(models, n: int = 1, **kw):
    out = []
    for i in range(n):
        weights = {"w": torch.full((3, 2), float(i)), "b": torch.arange(4)}
        out.append(
            publish_model(
                models, weights, ["a", "b", "c"], {"hidden": 2}, steps=i, **kw
            )
        )
    return out


def test_versions_increase_and_latest_points_at_the_newest(tmp_path):
    manifests = _publish(tmp_path, 3)
    assert [m.version for m in manifests] == ["v000001", "v000002", "v000003"]
    assert [m.parent_version for m in manifests] == [None, "v000001", "v000002"]
    assert latest_version(tmp_path) == "v000003"

    manifest, weights, vocab, config = read_model(tmp_path / "v000003")
    assert manifest.steps == 2
    assert torch.equal(weights["w"], torch.full((3, 2), 2.0))
    assert vocab == ["a", "b", "c"] and config == {"hidden": 2}


def test_only_the_newest_versions_are_kept(tmp_path):
    _publish(tmp_path, 5, keep=2)
    assert list_versions(tmp_path) == ["v000004", "v000005"]


def test_a_tampered_file_is_rejected(tmp_path):
    _publish(tmp_path, 1)
    vocab = tmp_path / "v000001" / "vocab.json"
    vocab.write_text(json.dumps(["a", "b", "EVIL"]))
    with pytest.raises(PublishError, match="vocab.json: checksum mismatch"):
        read_model(tmp_path / "v000001")


def test_a_partial_directory_is_rejected_and_never_listed(tmp_path):
    _publish(tmp_path, 1)
    (tmp_path / "v000001" / "weights.pt").unlink()
    with pytest.raises(PublishError, match="weights.pt is missing"):
        read_model(tmp_path / "v000001")

    # A crash mid-publish leaves a temporary folder: invisible, then cleaned.
    (tmp_path / ".tmp-v000002-999").mkdir()
    assert list_versions(tmp_path) == ["v000001"]
    _publish(tmp_path, 1)
    assert not (tmp_path / ".tmp-v000002-999").exists()
    assert latest_version(tmp_path) == "v000002"


def test_edited_manifest_metadata_is_rejected(tmp_path):
    _publish(tmp_path, 1)
    path = tmp_path / "v000001" / "manifest.json"
    manifest = json.loads(path.read_text())
    manifest["steps"] += 1
    path.write_text(json.dumps(manifest))
    with pytest.raises(PublishError, match="content checksum mismatch"):
        read_model(tmp_path / "v000001")
