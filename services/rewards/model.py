"""The reward-model artifact and its runtime scorer.

An artifact is a directory written atomically by the training job:

- ``config.json``: the :class:`RewardModelSpec` (capabilities, categories, aggregators, LoRA shape);
- ``weights.safetensors``: every tensor of the :class:`RewardNetwork` (fine-tuned encoder, LoRA
  adapters, value heads, aggregators) — no pickle anywhere;
- ``encoder/``: the encoder's BERT config and tokenizer files, so loading needs no other package;
- ``metrics.json``: held-out figures of the training run;
- ``manifest.json``: an ``ArtifactManifest(kind="reward-model")`` with the sha256 of all of the above.

:meth:`RewardModel.load` checks every hash before building anything, so a missing, partial or
corrupt artifact is refused with a message saying which file is wrong. With the artifact signing
key (``artifacts.signing_key_env``) the artifact is signed when written and must be to load, and
the encoder directory may not name custom code (:mod:`services.custom_code`).

Categories: each input is scored by its category's aggregator. A ``None`` category (or no
``categories`` at all) means the shared ``global`` aggregator, unless the model was loaded with
a ``categorize`` callable (the stage-1 router, for instance), which then names the category. A
category without an aggregator of its own (too little training data) also uses ``global``;
:attr:`RewardScore.category` still reports the input's category.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from services.artifacts import (
    ArtifactError,
    ArtifactManifest,
    artifact_directory,
    hash_files,
    verify_artifact,
    write_json_atomic,
    write_manifest,
)
from services.custom_code import refuse_custom_code
from services.rewards.network import RewardNetwork, pooled_states
from services.rewards.spec import GLOBAL_GROUP, REWARD_KIND, RewardModelSpec

CONFIG_FILE = "config.json"
WEIGHTS_FILE = "weights.safetensors"
METRICS_FILE = "metrics.json"
ENCODER_DIR = "encoder"

Categorize = Callable[[list[str]], list[str]]


class RewardScore(BaseModel):
    """The reward of one (prompt, response) pair and what each capability adapter thinks of it."""

    model_config = ConfigDict(frozen=True)

    reward: float = Field(description="Aggregated reward; only differences between responses are meaningful.")
    capabilities: dict[str, float] = Field(description="Each capability head's reward (same scale caveat).")
    category: str = Field(description="Category the pair was scored as ('global' when none was known).")


@dataclass
class RewardArtifactParts:
    """What the training job hands to :func:`write_reward_model`."""

    network: RewardNetwork
    tokenizer: Any
    encoder_config: Any
    manifest: ArtifactManifest
    metrics: dict[str, Any]


def write_reward_model(folder: Path, parts: RewardArtifactParts, key: bytes | None = None) -> ArtifactManifest:
    """Write the artifact into ``folder`` atomically (signed with ``key`` if given); returns the manifest as written."""
    from safetensors.torch import save_file

    state = {name: tensor.detach().contiguous().cpu() for name, tensor in parts.network.state_dict().items()}
    with artifact_directory(folder) as staging:
        (staging / CONFIG_FILE).write_text(parts.network.spec.model_dump_json(indent=2) + "\n", encoding="utf-8")
        save_file(state, str(staging / WEIGHTS_FILE), metadata={"format": "pt"})
        encoder_dir = staging / ENCODER_DIR
        encoder_dir.mkdir()
        parts.encoder_config.to_json_file(str(encoder_dir / "config.json"))
        parts.tokenizer.save_pretrained(str(encoder_dir))
        write_json_atomic(staging / METRICS_FILE, parts.metrics)
        names = [str(path.relative_to(staging)) for path in staging.rglob("*") if path.is_file()]
        manifest = parts.manifest.model_copy(update={"kind": REWARD_KIND, "files": hash_files(staging, names)})
        write_manifest(staging, manifest, key)
    return manifest


class RewardModel:
    """A loaded, verified reward model; :meth:`score` is batched and thread-compatible (no state)."""

    def __init__(
        self,
        network: RewardNetwork,
        tokenizer: Any,
        manifest: ArtifactManifest,
        *,
        categorize: Categorize | None = None,
        batch_size: int = 32,
    ) -> None:
        self.network = network.eval()
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.categorize = categorize
        self.batch_size = batch_size

    @property
    def spec(self) -> RewardModelSpec:
        return self.network.spec

    @property
    def version(self) -> str:
        return self.manifest.version

    @classmethod
    def load(
        cls, folder: Path, *, key: bytes | None = None, categorize: Categorize | None = None, batch_size: int = 32
    ) -> "RewardModel":
        """Verify and load an artifact directory, or raise :class:`ArtifactError` saying what is wrong.

        ``key``: the artifact signing key when one is configured; the artifact must then be signed with it.
        """
        from safetensors import SafetensorError
        from safetensors.torch import load_file
        from transformers import AutoConfig, AutoModel, AutoTokenizer

        folder = Path(folder)
        manifest = verify_artifact(folder, key)
        if manifest.kind != REWARD_KIND:
            raise ArtifactError(f"{folder} holds a '{manifest.kind}' artifact, not a {REWARD_KIND}")
        for required in (CONFIG_FILE, WEIGHTS_FILE, f"{ENCODER_DIR}/config.json"):
            if required not in manifest.files:
                raise ArtifactError(f"{folder}: the manifest lists no {required}; retrain with `coe train reward`")
        try:
            spec = RewardModelSpec.model_validate_json((folder / CONFIG_FILE).read_text(encoding="utf-8"))
        except ValueError as exc:
            raise ArtifactError(f"{folder / CONFIG_FILE} is not a valid reward-model config: {exc}") from exc
        encoder_dir = folder / ENCODER_DIR
        refuse_custom_code(encoder_dir)
        tokenizer = AutoTokenizer.from_pretrained(str(encoder_dir), local_files_only=True)
        encoder = AutoModel.from_config(AutoConfig.from_pretrained(str(encoder_dir), local_files_only=True))
        network = RewardNetwork(encoder, spec)
        try:
            state = load_file(str(folder / WEIGHTS_FILE))
            network.load_state_dict(state, strict=True)
        except (SafetensorError, OSError, RuntimeError) as exc:
            raise ArtifactError(f"{folder / WEIGHTS_FILE} does not fit the network in {CONFIG_FILE}: {exc}") from exc
        return cls(network, tokenizer, manifest, categorize=categorize, batch_size=batch_size)

    def resolve_categories(self, prompts: Sequence[str], categories: Sequence[str | None] | None) -> list[str]:
        """Each input's category: given, else from ``categorize``, else ``global``."""
        resolved: list[str | None] = list(categories) if categories is not None else [None] * len(prompts)
        if len(resolved) != len(prompts):
            raise ValueError(f"{len(prompts)} prompts but {len(resolved)} categories")
        missing = [index for index, category in enumerate(resolved) if category is None]
        if missing and self.categorize is not None:
            for index, category in zip(missing, self.categorize([prompts[index] for index in missing])):
                resolved[index] = category
        result = [category or GLOBAL_GROUP for category in resolved]
        for category in result:
            self.spec.group_of(category)  # raises for a category outside the taxonomy
        return result

    @torch.no_grad()
    def score(
        self, prompts: list[str], responses: list[str], categories: list[str | None] | None = None
    ) -> list[RewardScore]:
        """Score (prompt, response) pairs in batches; see the module docstring for categories."""
        if len(prompts) != len(responses):
            raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
        if not all(isinstance(text, str) for text in [*prompts, *responses]):
            raise ValueError("prompts and responses must be strings")
        if not prompts:
            return []
        labels = self.resolve_categories(prompts, categories)
        states = pooled_states(
            self.network, self.tokenizer, prompts, responses, self.spec.state_sources, batch_size=self.batch_size
        )  # (N, K, H)
        per_capability = self.network.capability_rewards(states)  # (N, K)
        rewards = self.network.aggregate(states, [self.spec.group_of(label) for label in labels])  # (N,)
        return [
            RewardScore(
                reward=float(rewards[index]),
                capabilities={name: float(per_capability[index, k]) for k, name in enumerate(self.spec.capabilities)},
                category=labels[index],
            )
            for index in range(len(prompts))
        ]


def transcript(messages: Sequence[Mapping[str, str]]) -> str:
    """What the reward model reads as the prompt: the conversation up to the last user turn."""
    if len(messages) == 1:
        return messages[0]["content"]
    return "\n".join(f"{message['role'].capitalize()}: {message['content']}" for message in messages)


def read_metrics(folder: Path) -> dict[str, Any]:
    """The ``metrics.json`` of an artifact (unverified; use :meth:`RewardModel.load` to verify)."""
    return json.loads((Path(folder) / METRICS_FILE).read_text(encoding="utf-8"))
