"""Settings of the offline jobs that the serving config also names (the reward model's place)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MappingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts_per_category: int = Field(
        32, ge=1, description="Prompts per category each expert answers: verifiable tasks where checks exist, else router prompts."
    )
    heldout_per_category: int = Field(
        32, ge=0, description="Held-out verifiable tasks per checked category for the end-to-end check (0: no check)."
    )
    max_tokens: int = Field(48, ge=1, le=4096, description="Completion budget of answers the reward model judges.")
    checked_max_tokens: int = Field(
        160, ge=1, le=4096, description="Completion budget of answers to verifiable tasks (room for the steps and the result)."
    )
    batch_size: int = Field(32, ge=1, le=256, description="Rows each local model decodes together while answering (offline, so more than serving).")
    budget: float | None = Field(None, gt=0, description="Total cost of the experts deployed; default router.budget or none.")
    local_processes: int = Field(
        2, ge=1, le=64, description="Without a Ray cluster: engines (one torch thread each) per base model."
    )


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reward_model: str = Field(description="Directory of the reward model (`coe train reward` writes it).")
    mapping: MappingOptions = Field(default_factory=MappingOptions)
