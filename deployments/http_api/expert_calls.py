"""Calling experts from the ingress: bounded in time, guarded by breakers, failing over when routed.

Every wait on an expert has a limit (``ingress.timeouts``), and every request a deadline, so no
request holds its concurrency slot forever. A routed request whose expert fails before its
first event goes to the next expert of the decision's ranking, skipping experts on the
deployment that just failed and experts whose breaker is open; the decision records each failed
attempt. After the first event a failure can no longer be hidden: the caller reports it.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from deployments.http_api.errors import as_coe_error
from services.api.schemas import ChatCompletionRequest
from services.breaker import BreakerState, CircuitBreaker
from services.config import AppConfig, IngressTimeouts
from services.errors import CoeError, DeadlineExceededError, ServiceUnavailableError, UpstreamError
from services.experts.config import LoRAExpert
from services.experts.generation import GenerationEvent, build_generation_request
from services.router.decision import FailoverAttempt, RouteDecision
from services.telemetry.metrics import EXPERT_BREAKER_STATE, EXPERT_FAILOVERS, EXPERT_FAILURES


class Deadline:
    """The request's deadline and the per-wait limits, as one place that raises 504."""

    def __init__(self, timeouts: IngressTimeouts) -> None:
        self.timeouts = timeouts
        self._end = time.monotonic() + timeouts.request_s

    def left_s(self) -> float:
        return self._end - time.monotonic()

    def _expired(self) -> DeadlineExceededError:
        return DeadlineExceededError(
            f"The request did not finish within its deadline of {self.timeouts.request_s:g} s (ingress.timeouts.request_s)."
        )

    async def bounded(self, awaitable: Any, limit_s: float, what: str) -> Any:
        """Await within ``limit_s`` and the deadline; ``what`` names the limit in the 504."""
        left = self.left_s()
        if left <= 0:
            raise self._expired()
        try:
            return await asyncio.wait_for(awaitable, min(limit_s, left))
        except asyncio.TimeoutError:
            if limit_s < left:
                raise DeadlineExceededError(f"{what} took longer than {limit_s:g} s.", code="expert_timeout") from None
            raise self._expired() from None

    async def next_event(self, stream: Any, expert: str, *, first: bool) -> GenerationEvent:
        if first:
            limit, name = self.timeouts.first_event_s, "first_event_s"
        else:
            limit, name = self.timeouts.between_events_s, "between_events_s"
        what = f"Expert '{expert}' {'answering' if first else 'sending its next tokens'} (ingress.timeouts.{name})"
        return await self.bounded(stream.__anext__(), limit, what)


def is_experts_fault(error: CoeError) -> bool:
    """Errors that another expert could avoid: the expert failed, timed out or is overloaded.
    The request deadline running out is not one; the client's own mistakes (4xx) are not either."""
    if error.code == "deadline_exceeded":
        return False
    return error.status_code >= 500 or error.status_code == 429


@dataclass
class ExpertStream:
    """An expert's answer in progress: the decision that names who answers, its first event, the rest."""

    decision: RouteDecision
    first: GenerationEvent
    _stream: Any
    _deadline: Deadline
    _breaker: CircuitBreaker
    _closed: bool = field(default=False)

    async def next(self) -> GenerationEvent:
        """The next event; an expert that fails or stops without finishing raises."""
        expert = self.decision.expert
        try:
            return await self._deadline.next_event(self._stream, expert, first=False)
        except StopAsyncIteration:
            error: CoeError = UpstreamError(f"expert '{expert}' ended its answer without finishing it", status_code=502)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            error = as_coe_error(exc)
        if is_experts_fault(error):
            self._breaker.failure()
            EXPERT_FAILURES.inc(expert=expert, status=error.status_code)
        raise error

    def cancel(self) -> None:
        """Stop generating for nobody (the client left, or the answer failed); idempotent."""
        if not self._closed:
            self._closed = True
            self._stream.cancel()


class ExpertCaller:
    """Opens answer streams on the expert deployments, with breakers and failover."""

    def __init__(self, config: AppConfig, handles: dict[str, Any]) -> None:
        self._config = config
        self._handles = handles  # deployment name -> DeploymentHandle
        options = config.failover.breaker
        self._breakers = {
            expert.name: CircuitBreaker(
                options.failure_threshold, options.open_s,
                on_change=lambda state, name=expert.name: EXPERT_BREAKER_STATE.set(int(state), expert=name),
            )
            for expert in config.experts
        }
        for name in self._breakers:
            EXPERT_BREAKER_STATE.set(int(BreakerState.CLOSED), expert=name)

    def breaker_states(self) -> dict[str, str]:
        return {name: breaker.state.name.lower() for name, breaker in self._breakers.items()}

    def _candidates(self, decision: RouteDecision) -> list[str]:
        """The decision's expert, then its ranking, then experts the router's table does not rank
        (added to the config after the router was trained), in config order: a lesser answer
        beats none."""
        ranked = [entry.expert for entry in decision.ranked]
        configured = [expert.name for expert in self._config.experts]
        return [name for name in dict.fromkeys([decision.expert, *ranked, *configured]) if name in configured]

    async def open(
        self, chat: ChatCompletionRequest, decision: RouteDecision, deadline: Deadline, *, routed: bool
    ) -> ExpertStream:
        """The first event of an answer, from the decision's expert or, for routed requests, the next in line."""
        attempts: list[FailoverAttempt] = []
        failed_deployments: set[str] = set()
        candidates = self._candidates(decision) if routed else [decision.expert]
        for name in candidates:
            if len(attempts) >= self._config.failover.max_attempts:
                break
            deployment = self._config.deployment_name_for(name)
            breaker = self._breakers[name]
            if deployment in failed_deployments:
                continue
            if not breaker.allow():
                if not routed:
                    raise self._unavailable(f"expert '{name}' is unavailable after repeated failures", breaker)
                continue
            try:
                first, stream = await self._start(chat, name, deadline)
            except asyncio.CancelledError:
                breaker.abandon()
                raise
            except CoeError as error:
                if not is_experts_fault(error):  # the expert answered, with the client's mistake
                    breaker.success()
                    raise
                breaker.failure()
                EXPERT_FAILURES.inc(expert=name, status=error.status_code)
                if not routed:
                    raise self._explicit_failure(name, error, breaker) from error
                EXPERT_FAILOVERS.inc(expert=name)
                attempts.append(FailoverAttempt(expert=name, error=error.message[:300]))
                failed_deployments.add(deployment)
                continue
            breaker.success()
            answered = decision.model_copy(update={"expert": name, "failovers": tuple(attempts)})
            return ExpertStream(answered, first, stream, deadline, breaker)
        tried = "; ".join(f"{attempt.expert}: {attempt.error}" for attempt in attempts) or "every candidate's breaker is open"
        raise ServiceUnavailableError(f"no expert could answer this request ({tried}); retry the request")

    async def _start(self, chat: ChatCompletionRequest, name: str, deadline: Deadline) -> tuple[GenerationEvent, Any]:
        expert = self._config.expert(name)
        generation = build_generation_request(chat, expert.name, expert.generation)
        handle = self._handles[self._config.deployment_name_for(name)]
        adapter_id = expert.name if isinstance(expert, LoRAExpert) else ""
        stream = handle.options(stream=True, multiplexed_model_id=adapter_id).generate.remote(generation)
        try:
            return await deadline.next_event(stream, name, first=True), stream
        except StopAsyncIteration:
            stream.cancel()
            raise ServiceUnavailableError(f"expert '{name}' returned no output") from None
        except BaseException as exc:
            stream.cancel()
            if isinstance(exc, (asyncio.CancelledError, CoeError)):
                raise
            raise as_coe_error(exc) from exc

    @staticmethod
    def _unavailable(message: str, breaker: CircuitBreaker) -> ServiceUnavailableError:
        retry_after = max(1, round(breaker.retry_after_s()))
        error = ServiceUnavailableError(f"{message}; retry after {retry_after} s", code="expert_unavailable")
        error.retry_after_s = retry_after  # type: ignore[attr-defined]
        return error

    def _explicit_failure(self, name: str, error: CoeError, breaker: CircuitBreaker) -> CoeError:
        """A named expert is not swapped for another: its failure is the answer, with Retry-After."""
        if isinstance(error, DeadlineExceededError):
            return error
        return self._unavailable(f"expert '{name}' failed: {error.message}", breaker)
