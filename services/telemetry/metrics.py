"""Every metric the service exports, declared once, recorded through Ray Serve's metrics.

Each replica records into ``ray.serve.metrics``, which tags every sample with the deployment,
the replica and the application, and which Ray's metrics agent on each node exports for
Prometheus (``ray_`` is prefixed to every name; a counter gains ``_total``). So the counters of
all replicas reach Prometheus side by side, and a rate summed over ``replica`` is right however
many replicas run. Outside a Ray worker (a benchmark or a test calling the code in-process) the
recording does nothing.

The Ray metric behind a declaration is made on its first use, in the process that records it:
the deployment and replica tags are fixed when it is made, and only a replica knows them.
This catalog is also what the Grafana dashboard may use (its test checks every query against
:func:`exported_names`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

EXPORT_PREFIX = "ray_"  # what Ray's exporter puts before every application metric
LATENCY_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
LOOKUP_BUCKETS_S = (0.0001, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64)

Kind = Literal["counter", "gauge", "histogram"]
CATALOG: list["Metric"] = []


@dataclass
class Metric:
    """One metric: its name as declared (without Ray's prefix), kind, help text and label names."""

    name: str
    kind: Kind
    description: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    _recorder: Any = field(default=None, init=False, repr=False)

    def __post_init__(self) -> None:
        CATALOG.append(self)

    def _ray_metric(self) -> Any:
        if self._recorder is None:
            from ray.serve import metrics

            if self.kind == "counter":
                self._recorder = metrics.Counter(self.name, description=self.description, tag_keys=self.labels)
            elif self.kind == "gauge":
                self._recorder = metrics.Gauge(self.name, description=self.description, tag_keys=self.labels)
            else:
                self._recorder = metrics.Histogram(
                    self.name, description=self.description, boundaries=list(self.buckets), tag_keys=self.labels
                )
        return self._recorder

    def _tags(self, labels: dict[str, Any]) -> dict[str, str]:
        if set(labels) != set(self.labels):
            raise ValueError(f"metric {self.name} takes the labels {self.labels}, not {tuple(labels)}")
        return {name: str(value) for name, value in labels.items()}

    def inc(self, amount: float = 1.0, **labels: Any) -> None:
        self._ray_metric().inc(amount, tags=self._tags(labels))

    def set(self, value: float, **labels: Any) -> None:
        self._ray_metric().set(value, tags=self._tags(labels))

    def observe(self, value: float, **labels: Any) -> None:
        self._ray_metric().observe(value, tags=self._tags(labels))

    def exported(self) -> tuple[str, ...]:
        """The sample names Prometheus sees for this metric."""
        name = EXPORT_PREFIX + self.name
        if self.kind == "counter":
            return (f"{name}_total",)
        if self.kind == "histogram":
            return (f"{name}_bucket", f"{name}_sum", f"{name}_count")
        return (name,)


def exported_names() -> set[str]:
    return {name for metric in CATALOG for name in metric.exported()}


# ---------------------------------------------------------------------------- requests (ingress)
REQUESTS = Metric(
    "coe_requests", "counter", "Chat and route requests answered, by endpoint, category, expert, policy and HTTP status.",
    ("endpoint", "category", "expert", "policy", "status"),
)
REQUEST_SECONDS = Metric(
    "coe_request_seconds", "histogram", "Time from a request's arrival to its last byte, by endpoint and HTTP status.",
    ("endpoint", "status"), LATENCY_BUCKETS_S,
)
TIME_TO_FIRST_TOKEN_SECONDS = Metric(
    "coe_time_to_first_token_seconds", "histogram", "Time from a chat request's arrival to its expert's first tokens.",
    ("expert",), LATENCY_BUCKETS_S,
)
TOKENS = Metric("coe_tokens", "counter", "Tokens of answered chat requests, by expert and direction (prompt, completion).",
                ("expert", "direction"))

# ---------------------------------------------------------------------------- routing
ROUTING_SECONDS = Metric(
    "coe_routing_seconds", "histogram", "Time to a routing decision, by where it came from (l1, redis, miss: computed).",
    ("source",), LOOKUP_BUCKETS_S,
)
ROUTER_DECISIONS = Metric(
    "coe_router_decisions", "counter", "Decisions computed by the router (cache misses), by category, expert and policy.",
    ("category", "expert", "policy"),
)
ROUTER_BATCH_SIZE = Metric(
    "coe_router_batch_size", "histogram", "Decisions computed together in one embedding pass.", (), BATCH_BUCKETS,
)

# ---------------------------------------------------------------------------- route cache
CACHE_LOOKUPS = Metric("coe_route_cache_lookups", "counter", "Route-cache lookups by level and result.", ("level", "result"))
CACHE_REDIS_ERRORS = Metric(
    "coe_route_cache_redis_errors", "counter", "Redis calls that failed, by operation and kind.", ("operation", "kind")
)
CACHE_REDIS_SKIPPED = Metric(
    "coe_route_cache_redis_skipped", "counter", "Redis calls skipped while the breaker was open.", ("operation",)
)
CACHE_CORRUPT_VALUES = Metric(
    "coe_route_cache_corrupt_values", "counter", "Cached values that did not parse or did not match their key."
)
CACHE_BREAKER_STATE = Metric("coe_route_cache_breaker_state", "gauge", "Redis circuit breaker: 0 closed, 1 open, 2 half-open.")

# ---------------------------------------------------------------------------- experts
EXPERT_FAILOVERS = Metric(
    "coe_expert_failovers", "counter", "Routed requests moved past a failed expert, by that expert.", ("expert",)
)
EXPERT_FAILURES = Metric("coe_expert_failures", "counter", "Expert calls that failed, by expert and HTTP status.",
                         ("expert", "status"))
EXPERT_BREAKER_STATE = Metric(
    "coe_expert_breaker_state", "gauge", "Expert circuit breaker: 0 closed, 1 open, 2 half-open.", ("expert",)
)

# ---------------------------------------------------------------------------- keys and limits
AUTH_FAILURES = Metric("coe_auth_failures", "counter", "Requests refused by authentication, by reason.", ("reason",))
RATE_LIMITED = Metric("coe_rate_limited", "counter", "Requests refused by a key's rate limit, by limit.", ("limit",))
RATE_LIMIT_FAIL_OPEN = Metric(
    "coe_rate_limit_fail_open", "counter", "Requests let through unchecked because Redis did not answer the limiter."
)

# ---------------------------------------------------------------------------- feedback and learner
FEEDBACK_RECEIVED = Metric(
    "coe_feedback_received", "counter",
    "Feedback the ingress took in, by outcome: accepted (appended to the stream once) or duplicate.", ("outcome",),
)
LEARNER_ENTRIES = Metric(
    "coe_learner_entries", "counter",
    "Feedback and shadow entries the learner dealt with, by outcome (feedback_positive, shadow, feedback_stale_router, ...).",
    ("outcome",),
)
LEARNER_POLICY_CHANGES = Metric(
    "coe_learner_policy_changes", "counter", "Routing policies the learner published, by change (promote, refresh, rollback).",
    ("change",),
)
LEARNER_DRIFTS = Metric("coe_learner_drifts", "counter", "Drifts the online learner's detectors signalled.")
