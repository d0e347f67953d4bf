"""Turn a request's ``model`` into a route decision when no trained router is involved."""

from __future__ import annotations

from services.api.schemas import quoted
from services.config import AppConfig
from services.errors import ModelNotFoundError
from services.router.decision import RouteDecision

AUTO_MODEL = "auto"


def resolve_explicit(config: AppConfig, model: str) -> RouteDecision:
    """A request that names an expert goes there: policy ``explicit``, no category computed."""
    expert = config.find_expert(model)
    if expert is None:
        known = ", ".join([AUTO_MODEL, *(e.name for e in config.experts), *config.model_aliases()])
        # The name is only looked up in the config, never used as a path; the message repeats a bounded part of it.
        raise ModelNotFoundError(f"The model {quoted(model)} does not exist. Available models: {known}.")
    return RouteDecision(expert=expert.name, policy="explicit")


def resolve_default(config: AppConfig, reason: str = "no router configured") -> RouteDecision:
    """``model: auto`` without a (working) router: the configured default expert answers."""
    return RouteDecision(expert=config.default_expert, policy="default", reason=f"{reason}; default_expert answers")
