"""Fuzzing the HTTP API from its own OpenAPI document, with schemathesis.

One module for ``tests/deployments/test_fuzz.py`` (a few hundred cases against the session's
app) and ``coe bench fuzz`` (a thousand against an app of its own), so both fuzz the same way.

Every operation the document lists is fuzzed, with valid bodies (``positive``: they reach past
validation into routing, generation, the feedback store) and invalid ones (``negative``: they
must be refused cleanly). A response passes when it is not a 5xx, when every error is OpenAI's
JSON error body, and when a stream ends with ``[DONE]`` and no error event. The only change made
to generated cases is that chat completions are kept short (at most ``MAX_FUZZ_TOKENS`` tokens),
so that a run takes minutes on a CPU rather than hours: that bounds how long, not what, is tried.
"""

from __future__ import annotations

import json
import random
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from typing import Any, Callable

CHAT_PATH = "/v1/chat/completions"
MAX_FUZZ_TOKENS = 8
BUDGET_FIELDS = ("max_tokens", "max_completion_tokens")
ERROR_FIELDS = ("message", "type", "param", "code")
REQUEST_TIMEOUT_S = 120.0


def short_generation(body: Any) -> Any:
    """A chat body whose completion is at most ``MAX_FUZZ_TOKENS`` tokens; anything else as is.

    Integers above the cap are lowered to it; values that are not a usable budget (negative,
    zero, a string, a boolean: what negative cases try) are left for the service to refuse. A
    body that asks for no budget gets one, since the expert's default (256) would decode for
    seconds per case.
    """
    if not isinstance(body, dict):
        return body
    for name in BUDGET_FIELDS:
        value = body.get(name)
        # JSON has one number type: 12924.0 is an integer to the service, so it is lowered too.
        if isinstance(value, (int, float)) and not isinstance(value, bool) and value > MAX_FUZZ_TOKENS:
            if isinstance(value, int) or value.is_integer():
                body[name] = MAX_FUZZ_TOKENS
    if all(body.get(name) is None for name in BUDGET_FIELDS):
        body["max_tokens"] = MAX_FUZZ_TOKENS
    return body


def load_schema(base_url: str, headers: dict[str, str]) -> Any:
    """The served ``/openapi.json``, with chat generation kept short (see :func:`short_generation`)."""
    import schemathesis

    schema = schemathesis.openapi.from_url(
        f"{base_url}/openapi.json", config=schemathesis.Config(), headers=headers, timeout=30
    )

    @schema.hook("map_body")
    def _short_chat(context: Any, body: Any) -> Any:
        return short_generation(body) if context.operation.path == CHAT_PATH else body

    return schema


def error_body_problem(payload: Any) -> str | None:
    """Why ``payload`` is not OpenAI's error body ``{"error": {"message", "type", "param", "code"}}``, or None."""
    error = payload.get("error") if isinstance(payload, dict) else None
    if not isinstance(error, dict):
        return "the body has no 'error' object"
    missing = [name for name in ERROR_FIELDS if name not in error]
    if missing:
        return f"the error object lacks {missing}"
    if not isinstance(error["message"], str) or not error["message"]:
        return "error.message is not a non-empty string"
    if not isinstance(error["type"], str):
        return "error.type is not a string"
    return None


def stream_problem(text: str) -> str | None:
    """Why an SSE body is not a complete stream: an error event, or no ``data: [DONE]``."""
    events = [line[len("data:"):].strip() for line in text.splitlines() if line.startswith("data:")]
    for event in events:
        if event != "[DONE]" and '"error"' in event:
            try:
                if "error" in json.loads(event):
                    return f"the stream carried an error event: {event[:300]}"
            except json.JSONDecodeError:
                return f"the stream carried an event that is not JSON: {event[:300]}"
    if not events or events[-1] != "[DONE]":
        return "the stream did not end with 'data: [DONE]'"
    return None


def response_problem(status: int, content_type: str, content: bytes) -> str | None:
    """What a client would find wrong with this response, or None when it is fine."""
    if status >= 500:
        return f"server error {status}: {content[:300]!r}"
    if status >= 400:
        if not content_type.startswith("application/json"):
            return f"error {status} with content type {content_type!r}, not OpenAI's JSON error body"
        try:
            payload = json.loads(content)
        except ValueError:
            return f"error {status} whose body is not JSON: {content[:300]!r}"
        problem = error_body_problem(payload)
        return f"error {status}: {problem}: {content[:300]!r}" if problem else None
    if content_type.startswith("text/event-stream"):
        return stream_problem(content.decode("utf-8", errors="replace"))
    return None


@dataclass
class Finding:
    """One response a client would call a bug, and how to send the same request again."""

    operation: str
    mode: str
    status: int
    problem: str
    curl: str


@dataclass
class FuzzReport:
    """How many cases each operation got, which statuses came back, and every finding."""

    seed: int
    cases: int = 0
    seconds: float = 0.0
    statuses: dict[str, Counter[int]] = field(default_factory=lambda: defaultdict(Counter))
    findings: list[Finding] = field(default_factory=list)

    def record(self, operation: str, status: int) -> None:
        self.cases += 1
        self.statuses[operation][status] += 1

    def summary(self) -> dict[str, Any]:
        return {
            "seed": self.seed,
            "cases": self.cases,
            "seconds": round(self.seconds, 1),
            "statuses": {operation: dict(sorted(counts.items())) for operation, counts in sorted(self.statuses.items())},
            "findings": [finding.__dict__ for finding in self.findings],
        }

    def describe(self) -> str:
        """A few lines a person can act on: counts, then each finding with its curl command."""
        lines = [f"{self.cases} cases in {self.seconds:.1f} s (seed {self.seed}), {len(self.findings)} findings"]
        for operation, counts in sorted(self.statuses.items()):
            lines.append(f"  {operation}: " + ", ".join(f"{status}×{count}" for status, count in sorted(counts.items())))
        for finding in self.findings[:20]:
            lines.append(f"- {finding.operation} ({finding.mode}): {finding.problem}\n    {finding.curl}")
        return "\n".join(lines)


def _plan(operations: list[Any], cases: int, *, first_round: bool) -> list[tuple[Any, Any, int]]:
    """(operation, generation mode, examples): an operation without inputs has one distinct case,
    sent in the first round; the rest of the budget goes to the operations with a body, half
    valid and half invalid."""
    from schemathesis import GenerationMode

    fixed = [operation for operation in operations if len(operation.body) == 0]
    fuzzed = [operation for operation in operations if len(operation.body) > 0]
    plan: list[tuple[Any, Any, int]] = [(operation, GenerationMode.POSITIVE, 1) for operation in fixed] if first_round else []
    pairs = [(operation, mode) for operation in fuzzed for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE)]
    remaining = max(0, cases - len(plan))
    for index, (operation, mode) in enumerate(pairs):
        share = remaining // len(pairs) + (1 if index < remaining % len(pairs) else 0)
        if share:
            plan.append((operation, mode, share))
    return plan


def fuzz(
    base_url: str,
    headers: dict[str, str],
    *,
    cases: int,
    seed: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> FuzzReport:
    """Send about ``cases`` generated requests to every operation of the served document.

    ``headers`` go with every request (the API key when auth is on). Rounds repeat with fresh
    seeds until ``cases`` were sent, since an operation may yield fewer distinct cases than asked.
    """
    import requests
    from hypothesis import HealthCheck, Phase, given, settings
    from hypothesis import seed as hypothesis_seed

    seed = random.randrange(2**32) if seed is None else seed
    report = FuzzReport(seed=seed)
    schema = load_schema(base_url, headers)
    operations = [result.ok() for result in schema.get_all_operations()]
    started = time.monotonic()
    with requests.Session() as session:

        def run(operation: Any, mode: Any, examples: int, round_seed: int) -> None:
            name = f"{operation.method.upper()} {operation.path}"

            @hypothesis_seed(round_seed)
            @settings(
                max_examples=examples, deadline=None, database=None, phases=[Phase.generate],
                suppress_health_check=list(HealthCheck), report_multiple_bugs=False,
            )
            @given(operation.as_strategy(generation_mode=mode, headers=headers))
            def send(case: Any) -> None:
                response = case.call(base_url=base_url, session=session, headers=headers, timeout=REQUEST_TIMEOUT_S)
                report.record(name, response.status_code)
                content_type = (response.headers.get("content-type") or [""])[0]
                problem = response_problem(response.status_code, content_type, response.content)
                if problem is not None:
                    report.findings.append(Finding(name, mode.value, response.status_code, problem, case.as_curl_command(headers=headers)))
                if progress is not None:
                    progress(report.cases)

            send()

        round_number = 0
        while report.cases < cases:
            before = report.cases
            for operation, mode, examples in _plan(operations, cases - report.cases, first_round=round_number == 0):
                run(operation, mode, examples, seed + round_number)
                round_number += 1
            if report.cases == before:
                break  # nothing more to generate
    report.seconds = time.monotonic() - started
    return report
