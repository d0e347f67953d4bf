"""Routing through the cache: the code path every ``auto`` request takes, in the ingress.

Hits are answered here, from the in-process L1 or from Redis, without a hop to the router
deployment; only a miss asks it (``decide``), and its answer is stored for the next time.
"""

from __future__ import annotations

import time
from typing import Awaitable, Callable

from services.cache.route_cache import RouteCache, ServingVersion, cache_key
from services.router.decision import RouteDecision
from services.router.front import PreparedQuery, RouterFront

Decide = Callable[[RouterFront, PreparedQuery], Awaitable[RouteDecision]]


async def route_with_cache(
    cache: RouteCache, front: RouterFront, query: PreparedQuery, decide: Decide, policy_revision: int = 0
) -> RouteDecision:
    """The L1, then Redis, then ``decide``; the decision's ``cache`` field says which answered.

    ``front`` and ``policy_revision`` are the router version and online-policy revision the key
    is made for. A decision is stored only when it was made under exactly those (a router or a
    policy swapping meanwhile may have decided under another), so a cached decision is never
    served under another version.
    """
    started = time.perf_counter()
    if not cache.config.enabled:
        return (await decide(front, query)).model_copy(update={"cache": "miss"})
    key = cache_key(cache.config.namespace, ServingVersion(front.version, policy_revision), query.text, front.cache_inputs(query))
    cached, source = await cache.get(key, front.version)
    if cached is not None and source is not None:
        cache.metrics.observe(source, time.perf_counter() - started)
        return cached.model_copy(update={"cache": source})
    decision = await decide(front, query)
    if decision.router_version == front.version and decision.policy_revision in (None, policy_revision):
        cache.put(key, decision)
    cache.metrics.observe("miss", time.perf_counter() - started)
    return decision.model_copy(update={"cache": "miss"})
