"""Routing through the cache: the code path a router replica runs for every ``auto`` request."""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from services.cache.route_cache import RouteCache, ServingVersion, cache_key
from services.router.decision import RouteDecision
from services.router.pipeline import PreparedQuery, StaticRouter

Decide = Callable[[StaticRouter, PreparedQuery], Awaitable[RouteDecision]]


async def route_with_cache(
    cache: RouteCache, router: StaticRouter, query: PreparedQuery, decide: Decide, policy_revision: int = 0
) -> RouteDecision:
    """The L1, then Redis, then ``decide``; the decision's ``cache`` field says which answered.

    ``policy_revision`` is the online-policy revision ``decide`` applies: a decision cached under
    one revision is never served under another.
    """
    started = time.perf_counter()
    if not cache.config.enabled:
        return (await decide(router, query)).model_copy(update={"cache": "miss"})
    key = cache_key(cache.config.namespace, ServingVersion(router.version, policy_revision), query.text, router.cache_inputs(query))
    cached, source = await cache.get(key, router.version)
    if cached is not None and source is not None:
        cache.metrics.observe(source, time.perf_counter() - started)
        return cached.model_copy(update={"cache": source})
    decision = await decide(router, query)
    cache.put(key, decision)
    cache.metrics.observe("miss", time.perf_counter() - started)
    return decision.model_copy(update={"cache": "miss"})
