"""Serving cost per expert: configured, or active parameters in billions read from the weights."""

from __future__ import annotations

from services.artifacts import signing_key
from services.config import AppConfig
from services.experts.config import LoRAExpert, OpenAIExpert
from services.experts.loading import count_parameters


def resolve_costs(config: AppConfig) -> dict[str, float]:
    """Cost of every expert; a LoRA expert without its own costs what its base costs."""
    costs: dict[str, float] = {}
    key = signing_key(config)  # a converted copy's recorded parameter count is trusted only when signed
    for base in config.local_bases():
        costs[base.name] = base.cost if base.cost is not None else round(count_parameters(base, key) / 1e9, 4)
    for expert in config.experts:
        if isinstance(expert, LoRAExpert):
            costs[expert.name] = expert.cost if expert.cost is not None else costs[expert.base]
        elif isinstance(expert, OpenAIExpert):
            assert expert.cost is not None  # required by OpenAIExpert's validation
            costs[expert.name] = expert.cost
    return costs
