"""What a DMoERM reward model is made of: capabilities, categories, aggregators, LoRA shape.

The spec is written into the artifact as ``config.json`` and is all the runtime needs (besides
the weights and the tokenizer) to rebuild the exact network the training job produced.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from services.router.config import CATEGORY_PATTERN, DEFAULT_CATEGORIES

DEFAULT_CAPABILITIES: tuple[str, ...] = ("correctness", "reasoning", "relevance", "completeness", "clarity", "format")
GLOBAL_GROUP = "global"  # the aggregator for uncategorised inputs and for categories with too few pairs
NEWLINE_MARKER = "¶"  # WordPiece drops whitespace; this keeps line breaks visible to the encoder
REWARD_KIND = "reward-model"


class LoraSpec(BaseModel):
    """One LoRA adapter per capability, all with this shape (the paper uses r=32, α=32 on q/v)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    r: int = Field(32, ge=1, le=256, description="LoRA rank.")
    alpha: int = Field(32, ge=1, description="LoRA scaling numerator (scale = alpha / r).")
    dropout: float = Field(0.05, ge=0, lt=1, description="Dropout on the LoRA input while training.")
    target_modules: tuple[str, ...] = Field(("query", "value"), min_length=1, description="BERT linear layers adapted.")


class RewardModelSpec(BaseModel):
    """The architecture of one trained reward model; validated when training starts and on load."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    capabilities: tuple[str, ...] = Field(
        DEFAULT_CAPABILITIES,
        description="One LoRA adapter each; none when the training data had no capability labels, and the "
        "aggregators then read the phase-1 encoder state.",
    )
    categories: tuple[str, ...] = Field(DEFAULT_CATEGORIES, min_length=1, description="Taxonomy of the outer layer.")
    aggregators: tuple[str, ...] = Field(
        (GLOBAL_GROUP,), description="Groups with an aggregator of their own; always includes 'global'."
    )
    hidden_size: int = Field(384, gt=0, description="Encoder hidden size H.")
    max_length: int = Field(256, ge=16, le=512, description="Token budget of one (prompt, response) pair.")
    pooling: Literal["mean"] = Field("mean", description="How token states become one vector per pair.")
    lora: LoraSpec = Field(default_factory=LoraSpec)
    backbone: str = Field(description="Where the encoder's pretrained weights came from (recorded, not loaded).")

    @model_validator(mode="after")
    def _check_names(self) -> "RewardModelSpec":
        for field, names in (("capabilities", self.capabilities), ("categories", self.categories)):
            if len(set(names)) != len(names):
                raise ValueError(f"{field} must be unique, got {list(names)}")
            bad = [name for name in names if not CATEGORY_PATTERN.match(name)]
            if bad:
                raise ValueError(f"{field} {bad} must be lower-case identifiers like 'correctness'")
        if GLOBAL_GROUP in self.categories:
            raise ValueError(f"'{GLOBAL_GROUP}' is reserved for the shared aggregator; rename that category")
        if GLOBAL_GROUP not in self.aggregators:
            raise ValueError(f"aggregators must include '{GLOBAL_GROUP}'")
        unknown = sorted(set(self.aggregators) - set(self.categories) - {GLOBAL_GROUP})
        if unknown:
            raise ValueError(f"aggregators {unknown} are not categories of the taxonomy {list(self.categories)}")
        return self

    @property
    def state_sources(self) -> tuple[str | None, ...]:
        """What the aggregators read, in order: each capability adapter's state, or (without
        capabilities) the phase-1 encoder's alone (``None``: no adapter)."""
        return self.capabilities or (None,)

    def group_of(self, category: str | None) -> str:
        """The aggregator that scores a category: its own if it has one, else the global one."""
        if category is None or category == GLOBAL_GROUP:
            return GLOBAL_GROUP
        if category not in self.categories:
            raise ValueError(
                f"category {category!r} is not in the reward model's taxonomy {list(self.categories)}; "
                f"pass one of them, or None/'{GLOBAL_GROUP}' for the shared aggregator"
            )
        return category if category in self.aggregators else GLOBAL_GROUP
