"""What a router version's decisions depend on besides the embedding: the routing text and knobs.

It is all the cache needs to key a decision, and needs no model, so the ingress can answer
cache hits without asking the router deployment; the router builds its decisions on the same
object, so the two can never disagree about a key.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

from services.router.artifact import RouterManifest
from services.router.config import RouterConfig
from services.router.decision import RoutingKnobs
from services.router.routing_input import routing_text


@dataclass(frozen=True)
class PreparedQuery:
    """One request's routing text (cut to the router's context) and knobs."""

    text: str
    clipped: bool
    knobs: RoutingKnobs


class RouterFront:
    """A router version's routing-text rule and effective knobs, from its manifest and the config."""

    def __init__(self, manifest: RouterManifest, settings: RouterConfig, costs: dict[str, float], general_expert: str) -> None:
        self.version = manifest.version
        self.context = manifest.context
        self.cost_weight = settings.cost_weight
        self.tau = settings.confidence_threshold if settings.confidence_threshold is not None else manifest.confidence_threshold
        self.entropy_bound = settings.entropy_threshold or manifest.entropy_threshold
        # Everything besides the artifact and the request that can change a decision.
        self._settings_fingerprint = [self.entropy_bound, settings.budget, general_expert, sorted(costs.items())]

    def prepare(self, messages: Iterable[Mapping[str, str]], knobs: RoutingKnobs | None = None) -> PreparedQuery:
        """Routing text of one request; an empty one is an :class:`InvalidRequestError`."""
        text, clipped = routing_text(messages, self.context)
        return PreparedQuery(text=text, clipped=clipped, knobs=knobs or RoutingKnobs())

    def knobs_of(self, query: PreparedQuery) -> tuple[float, float]:
        """(λ, τ) for this request: its own overrides, else the version's."""
        cost_weight = self.cost_weight if query.knobs.cost_weight is None else query.knobs.cost_weight
        tau = self.tau if query.knobs.confidence_threshold is None else query.knobs.confidence_threshold
        return cost_weight, tau

    def cache_inputs(self, query: PreparedQuery) -> tuple[object, ...]:
        """What, besides the version and the routing text, a cached decision depends on."""
        cost_weight, tau = self.knobs_of(query)
        return (round(cost_weight, 9), round(tau, 9), self._settings_fingerprint)
