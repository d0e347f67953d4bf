"""The router artifact: a manifest and the classification head's weights in safetensors.

Serving and training share this module. A router's version is a hash of its content, so the
same training result always has the same version and any change to weights, taxonomy,
thresholds or scores gives a new one. Loading verifies every hash and shape before anything is
served; a partial or corrupt artifact is refused with a message that says what is wrong. With the
artifact signing key (``artifacts.signing_key_env``), versions are signed when written and must
carry a valid signature to load (see :mod:`services.artifacts`).

Versions written before the out-of-distribution check existed have no ``ood`` entry; they load
and route as they always did, and their content hash is unchanged.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import Field

from services.artifacts import (
    ArtifactError,
    ArtifactManifest,
    artifact_directory,
    file_sha256,
    verify_artifact,
    write_manifest,
)
from services.router.config import ContextPolicy
from services.router.ood import OOD_FILE, OutOfDistribution, OutOfDistributionSettings

HEAD_FILE = "head.safetensors"
ROUTER_KIND = "router"
BUNDLED_EMBEDDER = "embedder"  # subdirectory holding a trained embedder, referenced as "artifact:embedder"
BUNDLED_REFERENCE = f"artifact:{BUNDLED_EMBEDDER}"


class RouterManifest(ArtifactManifest):
    """Everything the runtime router needs besides the head weights."""

    kind: str = ROUTER_KIND
    taxonomy: tuple[str, ...] = Field(description="Categories, in the order of the head's outputs.")
    embedder: str = Field(description="Reference of the sentence embedder the head was trained on.")
    embedding_dimension: int = Field(gt=0)
    context: ContextPolicy = Field(description="How conversations were turned into routing text.")
    temperature: float = Field(gt=0, description="Softmax temperature fitted on the calibration split.")
    confidence_threshold: float = Field(ge=0, le=1, description="τ chosen on the calibration split.")
    entropy_threshold: float = Field(gt=0, description="Entropy bound (nats) chosen on the calibration split.")
    scores: dict[str, dict[str, float]] = Field(description="s(category, expert): the runtime score table.")
    category_shares: dict[str, float] = Field(description="Share of training traffic per category (budget weights).")
    parent: str | None = Field(None, description="Version this one was derived from, if any.")
    ood: OutOfDistributionSettings | None = Field(
        None, description=f"The out-of-distribution check (banks in {OOD_FILE}); none in older versions."
    )


@dataclass(frozen=True)
class RouterArtifact:
    manifest: RouterManifest
    weight: np.ndarray  # (categories, dimension)
    bias: np.ndarray  # (categories,)
    folder: Path
    ood: OutOfDistribution | None = None

    @property
    def version(self) -> str:
        return self.manifest.version

    @property
    def bundled_embedder(self) -> Path | None:
        """The trained embedder inside this version, if the manifest refers to one."""
        return self.folder / BUNDLED_EMBEDDER if self.manifest.embedder == BUNDLED_REFERENCE else None


def content_version(manifest: RouterManifest) -> str:
    """Hash of everything that defines the router (not when it was written, nor what came before)."""
    payload = manifest.model_dump(mode="json", exclude={"version", "created_at", "parent"})
    if payload.get("ood") is None:
        payload.pop("ood", None)  # versions from before the check keep their hash
    return hashlib.sha256(json.dumps(payload, sort_keys=True).encode()).hexdigest()[:16]


def write_router_artifact(
    store: Path,
    manifest: RouterManifest,
    weight: np.ndarray,
    bias: np.ndarray,
    *,
    embedder_dir: Path | None = None,
    ood: OutOfDistribution | None = None,
    key: bytes | None = None,
) -> RouterArtifact:
    """Write a new version into ``store`` (atomically); returns it as loaded back from disk.

    With ``embedder_dir`` (a trained sentence-transformers directory), the embedder is copied
    into the version, every one of its files is hashed with the head, and the manifest refers
    to it as ``artifact:embedder``. With ``ood``, its banks are written and its settings recorded.
    With ``key`` (the artifact signing key), the manifest is signed. Every publisher of a router
    version (training, the mapping job, an ONNX export added later) writes through here.
    """
    from safetensors.numpy import save

    if weight.shape != (len(manifest.taxonomy), manifest.embedding_dimension) or bias.shape != (len(manifest.taxonomy),):
        raise ArtifactError(f"head shapes {weight.shape}/{bias.shape} do not match the taxonomy and embedding size")
    head = save({"weight": weight.astype(np.float32), "bias": bias.astype(np.float32)})
    files = {HEAD_FILE: hashlib.sha256(head).hexdigest()}
    update: dict[str, Any] = {"ood": None if ood is None else ood.settings}
    banks = None if ood is None else save(ood.tensors())
    if banks is not None:
        files[OOD_FILE] = hashlib.sha256(banks).hexdigest()
    if embedder_dir is not None:
        bundled = sorted(path for path in Path(embedder_dir).rglob("*") if path.is_file())
        files.update({f"{BUNDLED_EMBEDDER}/{path.relative_to(embedder_dir)}": file_sha256(path) for path in bundled})
        update["embedder"] = BUNDLED_REFERENCE
    manifest = manifest.model_copy(update={**update, "files": files, "version": ""})
    manifest = manifest.model_copy(update={"version": content_version(manifest)})
    with artifact_directory(store / manifest.version) as staging:
        (staging / HEAD_FILE).write_bytes(head)
        if banks is not None:
            (staging / OOD_FILE).write_bytes(banks)
        if embedder_dir is not None:
            shutil.copytree(embedder_dir, staging / BUNDLED_EMBEDDER)
        write_manifest(staging, manifest, key)
    return load_router_artifact(store / manifest.version, key)


def derive_router_artifact(store: Path, base: RouterArtifact, *, key: bytes | None = None, **changes: Any) -> RouterArtifact:
    """A new version in ``store`` that is ``base`` with manifest fields changed (a new score
    table, say): the head, the bundled embedder and the out-of-distribution banks carry over."""
    manifest = base.manifest.model_copy(update=changes)
    return write_router_artifact(
        store, manifest, base.weight, base.bias, embedder_dir=base.bundled_embedder, ood=base.ood, key=key
    )


def load_router_artifact(folder: Path, key: bytes | None = None) -> RouterArtifact:
    """Load and verify one artifact directory, or raise :class:`ArtifactError`.

    ``key``: the artifact signing key when one is configured; the version must then be signed
    with it. None (no key configured) loads unsigned versions, checking their hashes only.
    """
    from safetensors import SafetensorError
    from safetensors.numpy import load_file

    manifest = verify_artifact(folder, key, RouterManifest)
    assert isinstance(manifest, RouterManifest)
    if manifest.kind != ROUTER_KIND:
        raise ArtifactError(f"{folder} holds a '{manifest.kind}' artifact, not a router")
    if HEAD_FILE not in manifest.files:
        raise ArtifactError(f"{folder}: the manifest lists no {HEAD_FILE}")
    if content_version(manifest) != manifest.version:
        raise ArtifactError(f"{folder}: the manifest was changed after writing (content hash mismatch)")
    try:
        tensors: dict[str, Any] = load_file(str(folder / HEAD_FILE))
    except (SafetensorError, OSError) as exc:
        raise ArtifactError(f"{folder}: {HEAD_FILE} cannot be read: {exc}") from exc
    weight, bias = tensors.get("weight"), tensors.get("bias")
    expected = (len(manifest.taxonomy), manifest.embedding_dimension)
    if weight is None or bias is None or weight.shape != expected or bias.shape != (expected[0],):
        raise ArtifactError(f"{folder}: head weights do not match the taxonomy size {expected[0]} and dimension {expected[1]}")
    ood = None
    if manifest.ood is not None:
        if OOD_FILE not in manifest.files:
            raise ArtifactError(f"{folder}: the manifest has an out-of-distribution check but lists no {OOD_FILE}")
        try:
            ood = OutOfDistribution.load(manifest.ood, folder / OOD_FILE, manifest.embedding_dimension)
        except (SafetensorError, OSError, ValueError) as exc:
            raise ArtifactError(f"{folder}: {OOD_FILE} cannot be used: {exc}") from exc
    return RouterArtifact(manifest=manifest, weight=weight, bias=bias, folder=folder, ood=ood)
