"""Two-level cache of routing decisions: an in-process LRU, then Redis.

Keys carry the serving version (router artifact version and online-policy revision) in the
clear and hash everything that changes a decision, so a decision can never be served under
another version, and one version's entries can be flushed on their own. Every Redis call is
bounded by a short timeout and guarded by a circuit breaker: when Redis is slow, down or
restarting, lookups fall through to computing the decision, and nothing fails.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from dataclasses import dataclass
from typing import Any, Literal

from cachetools import TTLCache
from pydantic import ValidationError

from services.breaker import BreakerState, CircuitBreaker
from services.cache.config import CacheConfig, redacted
from services.cache.connection import async_client, sync_client
from services.cache.metrics import CacheMetrics
from services.router.decision import RouteDecision
from services.router.routing_input import collapse_whitespace

logger = logging.getLogger(__name__)

Source = Literal["l1", "redis"]


@dataclass(frozen=True)
class ServingVersion:
    """What a cached decision is valid for: the router version and the online-policy revision."""

    router: str
    policy_revision: int = 0


def cache_key(namespace: str, version: ServingVersion, routing_text: str, knobs: tuple[Any, ...]) -> str:
    """``<namespace>:<router>:<revision>:<sha256 of version, knobs and whitespace-collapsed text>``."""
    material = json.dumps([version.router, version.policy_revision, list(knobs), collapse_whitespace(routing_text)])
    digest = hashlib.sha256(material.encode("utf-8")).hexdigest()[:32]
    return f"{namespace}:{version.router}:{version.policy_revision}:{digest}"


class RouteCache:
    """Lives in a router replica; all methods run on its event loop."""

    def __init__(self, config: CacheConfig, metrics: CacheMetrics | None = None) -> None:
        self.config = config
        self.metrics = metrics or CacheMetrics()
        self._l1: TTLCache[str, RouteDecision] | None = (
            TTLCache(maxsize=config.l1_max_entries, ttl=config.ttl_s) if config.l1_max_entries else None
        )
        self._timeout = config.timeout_ms / 1000.0
        self._breaker = CircuitBreaker(config.breaker.failure_threshold, config.breaker.open_s, self._breaker_changed)
        self._client = async_client(config) if config.enabled else None
        self._pending_writes: set[asyncio.Task[None]] = set()
        self.metrics.breaker_changed(self._breaker.state)

    @property
    def breaker_state(self) -> BreakerState:
        return self._breaker.state

    def _breaker_changed(self, state: BreakerState) -> None:
        self.metrics.breaker_changed(state)
        url = redacted(self.config.resolved_url())
        if state == BreakerState.OPEN:
            logger.warning("route cache: Redis at %s is failing; using the in-process cache only for %.0fs", url, self.config.breaker.open_s)
        elif state == BreakerState.CLOSED:
            logger.info("route cache: Redis at %s answers again", url)

    def check_redis_at_start(self) -> bool:
        """One synchronous ping; without an answer, start with the breaker open (and say so once)."""
        if not self.config.enabled:
            return False
        try:
            sync_client(self.config).ping()
            return True
        except Exception as exc:  # any failure means the same: no Redis for now
            logger.warning(
                "route cache: no Redis answers at %s (%s); running with the in-process cache only until it does",
                redacted(self.config.resolved_url()),
                exc.__class__.__name__,
            )
            self._breaker.trip()
            return False

    # ------------------------------------------------------------------ Redis calls
    async def _redis(self, operation: str, call: Any) -> tuple[bool, Any]:
        """(succeeded, result) of one Redis call, under the timeout and the breaker."""
        if self._client is None:
            return False, None
        if not self._breaker.allow():
            self.metrics.skipped(operation)
            return False, None
        try:
            result = await asyncio.wait_for(call(self._client), self._timeout)
        except asyncio.CancelledError:  # the client left mid-call: no outcome, but the probe slot is freed
            self._breaker.abandon()
            raise
        except Exception as exc:  # timeouts, refused connections, restarts, protocol errors
            kind = "timeout" if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) else exc.__class__.__name__
            self.metrics.redis_error(operation, kind)
            self._breaker.failure()
            return False, None
        self._breaker.success()
        return True, result

    # ------------------------------------------------------------------ lookups
    async def get(self, key: str, expected_version: str) -> tuple[RouteDecision | None, Source | None]:
        if self._l1 is not None:
            decision = self._l1.get(key)
            if decision is not None:
                self.metrics.lookup("l1", "hit")
                return decision, "l1"
            self.metrics.lookup("l1", "miss")
        if self._client is None:
            return None, None
        ok, raw = await self._redis("get", lambda client: client.get(key))
        if not ok or raw is None:
            if ok:
                self.metrics.lookup("redis", "miss")
            return None, None
        decision = self._parse(raw, expected_version)
        if decision is None:
            self.metrics.corrupt()
            self.metrics.lookup("redis", "miss")
            return None, None
        self.metrics.lookup("redis", "hit")
        if self._l1 is not None:
            self._l1[key] = decision
        return decision, "redis"

    @staticmethod
    def _parse(raw: bytes, expected_version: str) -> RouteDecision | None:
        """A foreign or corrupt value is treated as absent; it never reaches a client."""
        try:
            decision = RouteDecision.model_validate_json(raw)
        except (ValidationError, ValueError, UnicodeDecodeError):
            return None
        return decision if decision.router_version == expected_version else None

    def put(self, key: str, decision: RouteDecision) -> None:
        """Store in the L1 now and in Redis in the background (the response does not wait)."""
        decision = decision.model_copy(update={"cache": None})
        if self._l1 is not None:
            self._l1[key] = decision
        if self._client is None:
            return
        value = json.dumps(decision.stored(), separators=(",", ":"))
        task = asyncio.get_running_loop().create_task(self._write(key, value))
        self._pending_writes.add(task)
        task.add_done_callback(self._pending_writes.discard)

    async def _write(self, key: str, value: str) -> None:
        await self._redis("set", lambda client: client.set(key, value, ex=self.config.ttl_s))

    async def drain(self) -> None:
        """Wait for background writes (tests and benchmarks want them settled)."""
        if self._pending_writes:
            await asyncio.gather(*self._pending_writes, return_exceptions=True)

    # ------------------------------------------------------------------ administration
    def clear_l1(self, version: str | None = None) -> int:
        if self._l1 is None:
            return 0
        doomed = [key for key in self._l1 if version is None or key.split(":")[-3] == version]
        for key in doomed:
            self._l1.pop(key, None)
        return len(doomed)

    async def flush(self, version: str | None = None, levels: tuple[str, ...] = ("l1", "redis")) -> dict[str, Any]:
        from services.cache import admin

        result: dict[str, Any] = {"version": version}
        if "l1" in levels:
            result["l1_removed"] = self.clear_l1(version)
        if "redis" in levels and self._client is not None:
            client = sync_client(self.config, timeout_s=5.0)
            try:
                result["redis_removed"] = await asyncio.to_thread(admin.flush, client, self.config.namespace, version)
            except Exception as exc:  # reported, not raised: flushing must not break the router
                result["redis_error"] = f"{exc.__class__.__name__}: {exc}"
            finally:
                client.close()  # one connection per flush, not one left open per flush
        return result

    def stats(self) -> dict[str, Any]:
        def count(level: str, outcome: str) -> float:
            return float(self.metrics.lookups[(level, outcome)])

        return {
            "enabled": self.config.enabled,
            "redis_url": redacted(self.config.resolved_url()),
            "breaker": self._breaker.state.name.lower(),
            "l1_entries": len(self._l1) if self._l1 is not None else 0,
            "l1_max_entries": self.config.l1_max_entries,
            "l1_hits": count("l1", "hit"),
            "l1_misses": count("l1", "miss"),
            "redis_hits": count("redis", "hit"),
            "redis_misses": count("redis", "miss"),
            "corrupt_values": float(self.metrics.corrupt_values),
        }
