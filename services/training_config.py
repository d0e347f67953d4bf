"""Settings of the offline jobs that the serving config also names (the reward model's place)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field


class MappingOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    prompts_per_category: int = Field(8, ge=1, description="Calibration prompts per category each expert answers.")
    max_tokens: int = Field(48, ge=1, le=4096, description="Completion budget per answer.")
    budget: float | None = Field(None, gt=0, description="Total cost of the experts deployed; default router.budget or none.")
    local_processes: int = Field(
        2, ge=1, le=64, description="Without a Ray cluster: engines (one torch thread each) per base model."
    )


class TrainingConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    reward_model: str = Field(description="Directory of the reward model (`coe train reward` writes it).")
    mapping: MappingOptions = Field(default_factory=MappingOptions)
