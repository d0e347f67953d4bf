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


def test_an_expert_that_stalls_gets_a_504_naming_the_limit_and_the_deadline_bounds_the_rest() -> None:
    """A stream that stops sending (a hung replica) is cut by the per-wait limit, and a request as a
    whole by its deadline; both are 504s that say which setting applied."""
    import asyncio

    import pytest

    from deployments.http_api.expert_calls import Deadline
    from services.config import IngressTimeouts
    from services.errors import DeadlineExceededError

    async def stalls() -> Any:
        yield "first"
        await asyncio.sleep(30)
        yield "never"

    async def scenario() -> None:
        stream = stalls()
        deadline = Deadline(IngressTimeouts(first_event_s=1, between_events_s=0.2, request_s=5))
        assert await deadline.next_event(stream, "smollm2", first=True) == "first"
        with pytest.raises(DeadlineExceededError, match=r"ingress.timeouts.between_events_s") as waited:
            await deadline.next_event(stream, "smollm2", first=False)
        assert waited.value.status_code == 504 and waited.value.code == "expert_timeout"

        short = Deadline(IngressTimeouts(first_event_s=10, between_events_s=10, request_s=0.3))
        slow = stalls()
        assert await short.next_event(slow, "smollm2", first=True) == "first"
        with pytest.raises(DeadlineExceededError, match=r"ingress.timeouts.request_s") as expired:
            await short.next_event(slow, "smollm2", first=False)
        assert expired.value.code == "deadline_exceeded"

    asyncio.run(scenario())
