"""The router: batched two-stage decisions, with hot-swap of the artifact.

It runs inside each ingress replica (``router.placement: ingress``) or as a deployment of its
own. It computes decisions; it does not cache them. The ingress answers cache hits itself and
asks the router only on a miss (``services/cache/cached_routing.py``). Concurrent requests share
embedding passes (``services/router/passes.py``; Serve's ``@serve.batch`` in front of it cost
0.8 ms per miss and a sixth of the throughput, measured by ``coe bench overhead``). A watcher
thread follows the store's ``current`` pointer; a new version is loaded and verified on the side
and swapped in with one assignment, so a request that started on the old version finishes on
it, and a broken version never replaces a working one.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any, Mapping, Sequence

from services.artifacts import ArtifactError
from services.config import AppConfig
from services.experts.loading import force_offline
from services.learner.serving import PolicyFollower
from services.router.decision import RouteDecision, RoutingKnobs
from services.router.loader import RouterFactory
from services.router.passes import CoalescingPasses
from services.router.pipeline import PreparedQuery, StaticRouter
from services.router.store import RouterStore
from services.telemetry.logs import join_serve_logs, request_logger
from services.telemetry.metrics import ROUTER_BATCH_SIZE, ROUTER_DECISIONS

logger = logging.getLogger(__name__)
decisions_log = request_logger()  # one line per computed decision, to the replica's JSON file


class RouterServer:
    def __init__(self, config: AppConfig) -> None:
        join_serve_logs()
        force_offline()
        assert config.router is not None
        import os

        import torch

        # Ray gives a fractional-CPU replica one thread; one batched pass should use the cores.
        torch.set_num_threads(config.router.batching.torch_threads or os.cpu_count() or 1)
        self._settings = config.router
        self._store = RouterStore.from_config(config)
        self._factory = RouterFactory(config)
        self._router: StaticRouter = self._factory.build(self._store.load_current())
        self._swap_lock = threading.Lock()
        self._last_error: str | None = None
        self._passes: CoalescingPasses[tuple[StaticRouter, PreparedQuery], RouteDecision] = CoalescingPasses(
            _decide_grouped, config.router.batching.max_batch_size
        )
        self._experts = frozenset(expert.name for expert in config.experts)
        self._policy = PolicyFollower(config.learner)
        self._policy.check()
        self._stopped = threading.Event()
        threading.Thread(target=self._watch, name="router-pointer-watch", daemon=True).start()

    # ------------------------------------------------------------------ versions
    def _watch(self) -> None:
        while not self._stopped.wait(self._settings.watch_interval_s):
            try:
                self.check_pointer()
            except Exception:  # the watcher must outlive any one bad check
                logger.exception("router pointer check failed")
            try:
                self._policy.check()
            except Exception:
                logger.exception("routing policy check failed")

    def check_pointer(self) -> dict[str, Any]:
        """Swap to the version ``current`` names, if it differs and loads cleanly."""
        with self._swap_lock:
            serving = self._router.version
            try:
                wanted = self._store.current_version()
                if wanted is None or wanted == serving:
                    return {"version": serving, "changed": False}
                router = self._factory.build(self._store.load_current())
            except (ArtifactError, ValueError, OSError) as exc:
                message = f"keeping router {serving}: {exc}"
                if message != self._last_error:
                    logger.error(message)
                self._last_error = message
                return {"version": serving, "changed": False, "error": str(exc)}
            self._router = router
            self._last_error = None
            logger.info("router swapped from %s to %s", serving, router.version)
            return {"version": router.version, "changed": True, "previous": serving}

    async def reload(self) -> dict[str, Any]:
        return await asyncio.to_thread(self.check_pointer)

    async def ready(self) -> dict[str, Any]:
        manifest = self._router.artifact.manifest
        return {"version": manifest.version, "taxonomy": list(manifest.taxonomy), "created_at": manifest.created_at}

    async def stats(self) -> dict[str, Any]:
        """Embedding passes run and decisions made: decisions / batches is the batch size that formed."""
        return {"batches": self._passes.passes, "decisions": self._passes.rows, "version": self._router.version}

    async def policy(self) -> dict[str, Any]:
        """The routing policy this replica serves (``POST /admin/policy/reload`` checks the pointer first)."""
        return self._policy.current.pointer.model_dump(mode="json")

    async def reload_policy(self) -> dict[str, Any]:
        await asyncio.to_thread(self._policy.check)
        return await self.policy()

    # ------------------------------------------------------------------ decisions
    async def decide(self, messages: Sequence[Mapping[str, str]], knobs: RoutingKnobs | None = None) -> RouteDecision:
        """The decision for one request, computed in a batch with whatever else is waiting.

        It carries the router version and policy revision it was made under, which the
        ingress checks before caching it.
        """
        router = self._router  # this request stays on this version and policy revision, whatever swaps meanwhile
        policy = self._policy.current
        query = router.prepare(messages, knobs)
        space = router.features.space.identity if router.features is not None else None
        (decision,) = await self._passes.run([(router, query)])
        decision = policy.apply(decision, space, self._experts)
        ROUTER_DECISIONS.inc(category=decision.category or "none", expert=decision.expert, policy=decision.policy)
        decisions_log.info(
            "routing decision",
            extra={
                "category": decision.category, "expert": decision.expert, "policy": decision.policy,
                "confidence": decision.confidence, "reason": decision.reason, "router_version": decision.router_version,
            },
        )
        return decision

    def __del__(self) -> None:
        stopped = getattr(self, "_stopped", None)
        if stopped is not None:
            stopped.set()


class InProcessRouter:
    """The router inside the ingress's own process (``router.placement: ingress``).

    The same :class:`RouterServer`, called the way a deployment handle is called
    (``router.decide.remote(...)`` gives an awaitable), so the ingress has one code path for both
    placements. It saves the hop to another replica on every miss, at the cost of an embedder
    per ingress replica.
    """

    def __init__(self, config: AppConfig) -> None:
        self._server = RouterServer(config)

    def __getattr__(self, name: str) -> "_LocalMethod":
        return _LocalMethod(getattr(self._server, name))


class _LocalMethod:
    def __init__(self, method: Any) -> None:
        self._method = method

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        return self._method(*args, **kwargs)


def _decide_grouped(items: list[tuple[StaticRouter, PreparedQuery]]) -> list[RouteDecision]:
    """Decide a batch; requests that straddle a swap are grouped by the version they started on.

    Answers go back by position, so a router that returned fewer decisions than it was asked
    for would hand one request another's answer: that fails the whole batch instead.
    """
    ROUTER_BATCH_SIZE.observe(len(items))
    results: list[RouteDecision | None] = [None] * len(items)
    by_router: dict[int, list[int]] = {}
    for index, (router, _) in enumerate(items):
        by_router.setdefault(id(router), []).append(index)
    for indices in by_router.values():
        router = items[indices[0]][0]
        decisions = router.decide([items[i][1] for i in indices])
        if len(decisions) != len(indices):
            raise RuntimeError(f"router {router.version} returned {len(decisions)} decisions for {len(indices)} requests")
        for index, decision in zip(indices, decisions):
            results[index] = decision
    missing = [index for index, decision in enumerate(results) if decision is None]
    if missing:
        raise RuntimeError(f"no decision for batch positions {missing}")
    return results  # type: ignore[return-value]
