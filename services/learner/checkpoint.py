"""Signed learner checkpoints: the artifact format, plus an HMAC over its manifest.

river's trees can only be saved by pickle, and unpickling runs code. So a checkpoint is loaded
only after HMAC-SHA256 of ``manifest.json`` under the configured key matches ``manifest.hmac``,
and every file matches the sha256 the manifest records; a copied-in, edited or truncated
checkpoint is refused before a byte of pickle is read. Torch weights go in safetensors, the rest
of the state in JSON; the pickle holds only the river objects. Signing and checking are
:mod:`services.artifacts`'s, as for every other artifact; unlike the others, a checkpoint is
always signed (a key is always configured), because of the pickle.
"""

from __future__ import annotations

import json
import pickle
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file

from services.artifacts import (
    ArtifactError,
    ArtifactManifest,
    artifact_directory,
    durable_directory,
    hash_files,
    new_version,
    verify_artifact,
    write_manifest,
)
from services.learner.config import DriftMoESettings, LinUCBSettings
from services.learner.driftmoe import DriftMoE
from services.learner.linucb import LinUCBRouter

RoutingModel = DriftMoE | LinUCBRouter
# What a checkpoint's "policy" names: the model class and its settings. Checkpoints written before
# the bandit existed have no "policy" and are DriftMoE's.
MODEL_KINDS: dict[str, tuple[type[DriftMoE] | type[LinUCBRouter], type[DriftMoESettings] | type[LinUCBSettings]]] = {
    "driftmoe": (DriftMoE, DriftMoESettings),
    "linucb": (LinUCBRouter, LinUCBSettings),
}

TENSORS_NAME = "weights.safetensors"
RIVER_NAME = "river.pkl"
STATE_NAME = "state.json"


class CheckpointError(ArtifactError):
    """A checkpoint is missing, unsigned, signed with another key, or altered."""


@dataclass
class LearnerSnapshot:
    """A routing model (DriftMoE or the bandit) and the JSON state that travels with it."""

    model: RoutingModel
    state: dict[str, Any]
    extra_tensors: dict[str, torch.Tensor] = field(default_factory=dict)  # e.g. the feature projection


def save_snapshot(
    destination: Path, snapshot: LearnerSnapshot, key: bytes, *, kind: str, name: str, durable: bool = False
) -> None:
    """Write ``snapshot`` to ``destination`` atomically and sign it.

    ``durable``: replace an existing snapshot in one crash-safe step (see ``durable_directory``),
    for the checkpoint that acknowledged stream entries depend on. Policy snapshots get a new
    name per revision, and the pointer file makes their switch atomic.
    """
    model = snapshot.model
    with (durable_directory if durable else artifact_directory)(destination) as staging:
        clashes = set(snapshot.extra_tensors) & set(model.tensors())
        if clashes:
            raise ValueError(f"extra tensors reuse the model's names: {sorted(clashes)}")
        extra = {f"extra.{name}": tensor.contiguous() for name, tensor in snapshot.extra_tensors.items()}
        save_file(model.tensors() | extra, str(staging / TENSORS_NAME))
        with (staging / RIVER_NAME).open("wb") as handle:
            pickle.dump(model.river_parts(), handle, protocol=pickle.HIGHEST_PROTOCOL)
        state = {
            "policy": model.kind,
            "n_features": model.n_features,
            "settings": model.settings.model_dump(mode="json"),
            "model": model.plain_state(),
            "learner": snapshot.state,
        }
        (staging / STATE_NAME).write_text(json.dumps(state), encoding="utf-8")
        manifest = ArtifactManifest(
            kind=kind, name=name, version=new_version(), files=hash_files(staging, [TENSORS_NAME, RIVER_NAME, STATE_NAME])
        )
        write_manifest(staging, manifest, key)


def verify_snapshot(folder: Path, key: bytes) -> ArtifactManifest:
    """The manifest, once the signature and every file hash check out; else :class:`CheckpointError`."""
    try:
        manifest = verify_artifact(folder, key)
    except ArtifactError as exc:
        raise CheckpointError(f"learner checkpoint: {exc}") from exc
    if sorted(manifest.files) != sorted([TENSORS_NAME, RIVER_NAME, STATE_NAME]):
        raise CheckpointError(f"{folder}: unexpected files {sorted(manifest.files)}")
    return manifest


def load_snapshot(folder: Path, key: bytes) -> LearnerSnapshot:
    """Verify, then load; the pickle is opened only after verification."""
    verify_snapshot(folder, key)
    state = json.loads((folder / STATE_NAME).read_text(encoding="utf-8"))
    kind = state.get("policy", "driftmoe")
    if kind not in MODEL_KINDS:
        raise CheckpointError(f"{folder}: unknown routing policy {kind!r}")
    model_class, settings_class = MODEL_KINDS[kind]
    settings = settings_class.model_validate(state["settings"])
    with (folder / RIVER_NAME).open("rb") as handle:
        river_parts = pickle.load(handle)  # noqa: S301 - signed by our own key, checked above
    tensors = load_file(str(folder / TENSORS_NAME))
    extra = {name[len("extra."):]: tensor for name, tensor in tensors.items() if name.startswith("extra.")}
    model_tensors = {name: tensor for name, tensor in tensors.items() if not name.startswith("extra.")}
    model = model_class.restore(int(state["n_features"]), settings, model_tensors, river_parts, state["model"])
    return LearnerSnapshot(model=model, state=state["learner"], extra_tensors=extra)
