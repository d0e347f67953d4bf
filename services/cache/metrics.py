"""Prometheus metrics of the route cache, in a registry of the replica's own."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from services.breaker import BreakerState


class CacheMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.lookups = Counter(
            "coe_route_cache_lookups", "Route-cache lookups by level and result.", ["level", "result"], registry=self.registry
        )
        self.redis_errors = Counter(
            "coe_route_cache_redis_errors", "Redis calls that failed, by operation and kind.", ["operation", "kind"], registry=self.registry
        )
        self.skipped = Counter(
            "coe_route_cache_redis_skipped", "Redis calls skipped while the breaker was open.", ["operation"], registry=self.registry
        )
        self.corrupt = Counter(
            "coe_route_cache_corrupt_values", "Cached values that did not parse or did not match their key.", registry=self.registry
        )
        self.breaker_state = Gauge(
            "coe_route_cache_breaker_state", "Redis circuit breaker: 0 closed, 1 open, 2 half-open.", registry=self.registry
        )
        self.lookup_seconds = Histogram(
            "coe_route_cache_lookup_seconds",
            "Time to answer a routing decision, by where it came from.",
            ["source"],
            buckets=(0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0),
            registry=self.registry,
        )

    def observe(self, source: str, seconds: float) -> None:
        self.lookup_seconds.labels(source).observe(seconds)

    def breaker_changed(self, state: BreakerState) -> None:
        self.breaker_state.set(int(state))

    def exposition(self) -> bytes:
        return generate_latest(self.registry)
