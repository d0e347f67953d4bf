"""One request as operators see it: its metrics samples and one JSON log line, when it ends.

The ingress opens a :class:`RequestRecord` as a request arrives and fills it as the request
moves on (the route decision, the expert's first tokens, the token counts); ``finish`` records
it once, however the request ends (an answer, an error, a stream the client left). The log line
carries the route, the expert, the status and the timings, and Serve adds the request id. The
prompt and the completion are in it only with ``logging.include_text: true``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from services.experts.generation import GenerationEvent
from services.router.decision import RouteDecision
from services.telemetry.logs import request_logger
from services.telemetry.metrics import REQUEST_SECONDS, REQUESTS, TIME_TO_FIRST_TOKEN_SECONDS, TOKENS

requests_log = request_logger()

NONE = "none"  # the label value of a request that never got that far (no decision, no expert)


def _ms(start: float, end: float | None) -> float | None:
    return None if end is None else round((end - start) * 1000, 2)


@dataclass
class RequestRecord:
    endpoint: str  # the ingress method that answers it: chat_completions, route_only, feedback, ...
    include_text: bool = False
    started: float = field(default_factory=time.perf_counter)
    decision: RouteDecision | None = None
    routed_at: float | None = None
    first_token_at: float | None = None
    final: GenerationEvent | None = None
    prompt: list[dict[str, str]] | None = None
    completion: list[str] = field(default_factory=list)
    finished: bool = False

    def routed(self, decision: RouteDecision) -> None:
        self.decision = decision
        self.routed_at = time.perf_counter()

    def first_token(self, decision: RouteDecision) -> None:
        """The expert's first event arrived (the decision names who answered, after any failover)."""
        self.decision = decision
        self.first_token_at = time.perf_counter()

    def text(self, piece: str) -> None:
        if self.include_text:
            self.completion.append(piece)

    def finish(self, status: int, outcome: str = "answered", error: str | None = None) -> None:
        """Record the request once: metrics and its log line. Later calls do nothing."""
        if self.finished:
            return
        self.finished = True
        ended = time.perf_counter()
        decision = self.decision
        expert = decision.expert if decision is not None else NONE
        REQUESTS.inc(
            endpoint=self.endpoint, category=(decision.category if decision is not None else None) or NONE, expert=expert,
            policy=decision.policy if decision is not None else NONE, status=status,
        )
        REQUEST_SECONDS.observe(ended - self.started, endpoint=self.endpoint, status=status)
        if self.first_token_at is not None:
            TIME_TO_FIRST_TOKEN_SECONDS.observe(self.first_token_at - self.started, expert=expert)
        if self.final is not None:
            TOKENS.inc(self.final.prompt_tokens, expert=expert, direction="prompt")
            TOKENS.inc(self.final.completion_tokens, expert=expert, direction="completion")
        requests_log.info("request finished", extra=self._fields(status, outcome, error, ended))

    def _fields(self, status: int, outcome: str, error: str | None, ended: float) -> dict[str, Any]:
        decision = self.decision
        fields: dict[str, Any] = {
            "endpoint": self.endpoint,
            "status": status,
            "outcome": outcome,
            "total_ms": _ms(self.started, ended),
            "routing_ms": _ms(self.started, self.routed_at),
            "ttft_ms": _ms(self.started, self.first_token_at),
        }
        if error is not None:
            fields["error"] = error
        if decision is not None:
            fields.update(
                expert=decision.expert, category=decision.category, policy=decision.policy, cache=decision.cache,
                confidence=decision.confidence, router_version=decision.router_version,
                failovers=len(decision.failovers),
            )
        if self.final is not None:
            fields.update(prompt_tokens=self.final.prompt_tokens, completion_tokens=self.final.completion_tokens,
                          finish_reason=self.final.finish_reason)
        if self.include_text:
            fields.update(prompt=self.prompt, completion="".join(self.completion) if self.completion else None)
        return fields
