"""The route cache's counts: exported for Prometheus, and kept here for ``/admin/cache/stats``.

The export (``services.telemetry.metrics``) is per replica and read by Prometheus; the stats
endpoint answers from this replica's own counts, without a Prometheus to ask.
"""

from __future__ import annotations

from collections import Counter

from services.breaker import BreakerState
from services.telemetry.metrics import (
    CACHE_BREAKER_STATE,
    CACHE_CORRUPT_VALUES,
    CACHE_LOOKUPS,
    CACHE_REDIS_ERRORS,
    CACHE_REDIS_SKIPPED,
    ROUTING_SECONDS,
)


class CacheMetrics:
    def __init__(self) -> None:
        self.lookups: Counter[tuple[str, str]] = Counter()  # (level, result) -> lookups in this replica
        self.corrupt_values = 0

    def lookup(self, level: str, result: str) -> None:
        self.lookups[(level, result)] += 1
        CACHE_LOOKUPS.inc(level=level, result=result)

    def corrupt(self) -> None:
        self.corrupt_values += 1
        CACHE_CORRUPT_VALUES.inc()

    def redis_error(self, operation: str, kind: str) -> None:
        CACHE_REDIS_ERRORS.inc(operation=operation, kind=kind)

    def skipped(self, operation: str) -> None:
        CACHE_REDIS_SKIPPED.inc(operation=operation)

    def observe(self, source: str, seconds: float) -> None:
        """Time to a decision, by where it came from (l1, redis, or miss: computed)."""
        ROUTING_SECONDS.observe(seconds, source=source)

    def breaker_changed(self, state: BreakerState) -> None:
        CACHE_BREAKER_STATE.set(int(state))
