"""Config for fault drills: the default expert's model served twice, and a prompt that breaks a step.

Failover needs somewhere to go, so the drill serves the default expert's model again in a
deployment of its own (the twin), ranked after the default deployment's experts. Prompts that
contain ``FAULT_DRILL`` make the default expert's decode step fail, as a broken kernel would.
A router trained without the twin does not rank it; failover still reaches it, after the ranked experts.
Used by ``coe bench faults`` and the fault tests; never by a service config.
"""

from __future__ import annotations

import copy
from typing import Any

FAULT_DRILL = "coe-fault-drill:engine-step"
TWIN_SUFFIX = "-twin"
TWIN_SCORE = 0.35  # below the default deployment's experts in the initial scores, above the default score


def with_fault_drill(raw: dict[str, Any], *, breaker_open_s: float = 3.0, max_attempts: int = 3) -> dict[str, Any]:
    """A copy of the config dict ``raw`` with the drill marker on the default expert and its twin."""
    raw = copy.deepcopy(raw)
    default = next(expert for expert in raw["experts"] if expert["name"] == raw["default_expert"])
    default["batching"] = {**default.get("batching", {}), "fault_drill": FAULT_DRILL}
    twin = {key: value for key, value in copy.deepcopy(default).items() if key not in ("batching", "description")}
    twin.update(name=twin_name(raw), description="The default expert's model, served apart (fault drills).")
    twin["deployment"] = {**twin.get("deployment", {}), "num_cpus": 0.1}
    raw["experts"].append(twin)
    for scores in raw.get("router", {}).get("initial_scores", {}).values():
        scores[twin["name"]] = TWIN_SCORE
    raw["failover"] = {"max_attempts": max_attempts, "breaker": {"failure_threshold": 3, "open_s": breaker_open_s}}
    return raw


def twin_name(raw: dict[str, Any]) -> str:
    return f"{raw['default_expert']}{TWIN_SUFFIX}"


def wait_until_quiet(url: str, timeout_s: float = 60) -> dict[str, Any]:
    """``/admin/status`` once nothing is in flight and no engine decodes (or when ``timeout_s`` ran out)."""
    import time

    import httpx

    from services.auth.keys import service_headers

    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{url}/admin/status", headers=service_headers(), timeout=30).json()
        quiet = status["in_flight"] == 0 and all(engine.get("active_rows") == 0 for engine in status["engines"].values())
        if quiet or time.monotonic() > deadline:
            return status
        time.sleep(0.5)


def wait_for_learner(url: str, redis: Any, stream: str, timeout_s: float = 120) -> dict[str, Any]:
    """``/admin/learner/status`` once the learner applied, checkpointed and acknowledged all of ``stream``;
    ``TimeoutError`` (with the last status) when it did not within ``timeout_s``."""
    import time

    import httpx

    from services.auth.keys import service_headers

    from services.learner.service import entry_order

    deadline = time.monotonic() + timeout_s
    while True:
        status = httpx.get(f"{url}/admin/learner/status", headers=service_headers(), timeout=30).json()
        last = redis.xrevrange(stream, count=1)
        caught_up = not last or entry_order(status["positions"][stream]) >= entry_order(last[0][0])
        if caught_up and status["unacknowledged"] == 0:
            return status
        if time.monotonic() > deadline:
            raise TimeoutError(f"the learner did not catch up with {stream}: {status}")
        time.sleep(0.5)
