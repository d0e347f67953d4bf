"""Which experts a routed request may fail over to, in which order."""

from __future__ import annotations

from typing import Any

from deployments.http_api.expert_calls import ExpertCaller
from services.router.decision import RankedExpert, RouteDecision
from tests.conftest import TWIN_EXPERT


def test_failover_tries_the_ranking_first_then_experts_the_router_does_not_rank(app_config: Any) -> None:
    """A router trained before the twin was configured does not rank it; it is still reachable, last."""
    caller = ExpertCaller(app_config, {})
    decision = RouteDecision(expert="smollm2-math", policy="static", category="math", ranked=(
        RankedExpert(expert="smollm2-math", score=0.8), RankedExpert(expert="smollm2", score=0.4),
        RankedExpert(expert="retired-expert", score=0.3),
    ))
    candidates = caller._candidates(decision)
    assert candidates[:2] == ["smollm2-math", "smollm2"], "the decision's expert, then its ranking"
    assert "retired-expert" not in candidates, "an expert no longer configured is never called"
    assert set(candidates[2:]) == {expert.name for expert in app_config.experts} - {"smollm2-math", "smollm2"}
    assert TWIN_EXPERT in candidates
