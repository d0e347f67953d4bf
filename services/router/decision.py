"""The one record of a routing decision.

The router produces it, the cache stores it unchanged, the API returns it as metadata and the
learner consumes it, so every consumer agrees on what was decided.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

Policy = Literal["default", "static", "online", "explicit"]
CacheSource = Literal["miss", "l1", "redis"]


class RoutingKnobs(BaseModel):
    """Per-request overrides of the routing knobs: the ``coe`` field of a request body."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cost_weight: float | None = Field(None, ge=0, le=100, description="λ: how much cost counts against quality.")
    confidence_threshold: float | None = Field(None, ge=0, le=1, description="τ: below it, the general expert answers.")


class RankedExpert(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str
    score: float = Field(description="Higher is better; comparable within one decision only.")


class FailoverAttempt(BaseModel):
    """An expert that was tried for a routed request and failed, and why."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str
    error: str


class RouteDecision(BaseModel):
    """Which expert answers, chosen how, and how sure the router was."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str = Field(description="Expert that answers the request.")
    policy: Policy = Field(description="default | static | online | explicit.")
    category: str | None = Field(None, description="Stage-1 category; None when not computed.")
    probabilities: dict[str, float] | None = Field(None, description="Stage-1 p(category | request).")
    confidence: float | None = Field(None, description="Top category probability.")
    ranked: tuple[RankedExpert, ...] = Field((), description="Alternatives, best first.")
    uncertain: bool = Field(False, description="True when the uncertainty fallback chose the expert.")
    reason: str | None = Field(
        None,
        description='Why the fallback or policy applied; "out_of_distribution" when the request is far from all training data.',
    )
    ood_score: float | None = Field(
        None, description="Distance from the router's training data (higher is further); None for routers without the check."
    )
    router_version: str | None = Field(None, description="Router artifact version that decided.")
    truncated: bool = Field(False, description="The routing input was longer than the router reads; it saw the start.")
    cache: CacheSource | None = Field(None, description="Where the decision came from, when cached routing ran.")
    policy_revision: int | None = Field(
        None, description="Online-policy revision the decision was made under (it is part of the cache key)."
    )
    failovers: tuple[FailoverAttempt, ...] = Field(
        (), description="Experts tried before the one that answered (`expert`), each with its error."
    )
    features: tuple[float, ...] | None = Field(
        None,
        exclude=True,
        description="The learner's input x for this request; kept with the completion, never sent to clients.",
    )

    def stored(self) -> dict[str, object]:
        """The decision as the cache and the completion records keep it: features included, ``cache`` not."""
        body = self.model_dump(mode="json", exclude={"cache"}, exclude_none=True)
        if self.features is not None:
            body["features"] = list(self.features)
        return body

    def headers(self) -> dict[str, str]:
        """Route metadata as ``x-coe-*`` response headers; ``none`` marks a value not computed."""
        return {
            "x-coe-expert": self.expert,
            "x-coe-policy": self.policy,
            "x-coe-category": self.category or "none",
            "x-coe-route-confidence": "none" if self.confidence is None else f"{self.confidence:.4f}",
            "x-coe-router-version": self.router_version or "none",
            "x-coe-policy-revision": "none" if self.policy_revision is None else str(self.policy_revision),
            "x-coe-failovers": str(len(self.failovers)),
        }
