"""The HTTP ingress: OpenAI-compatible routes over the expert deployments.

It parses and validates requests, decides the route, calls the expert deployment through its
handle, and renders results (and every error) in OpenAI's format. It holds no model. Each
concern it relies on has its module in ``deployments.http_api``: errors, admission (limits),
expert calls (timeouts, breakers, failover), streaming, background writes.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response

from deployments.http_api.access import Gatekeeper, estimated_tokens
from deployments.http_api.admission import ConcurrencyLimiter, Slot, read_body
from deployments.http_api.completion_records import CompletionRecords
from deployments.http_api.errors import as_coe_error, install_error_handlers
from deployments.http_api.expert_calls import Deadline, ExpertCaller, ExpertStream
from deployments.http_api.metrics_export import cluster_metrics
from deployments.http_api.request_log import RequestRecord
from deployments.http_api.route_view import RouteView
from deployments.http_api.streaming import GuardedStreamingResponse, chat_events, usage_of
from services.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionRequest,
    Choice,
    ModelCard,
    ModelList,
    new_completion_id,
    now,
    parse_cache_flush,
    parse_chat_request,
    parse_feedback,
)
from services.cache.cached_routing import route_with_cache
from services.cache.route_cache import RouteCache
from services.config import AppConfig
from services.errors import CoeError, DeadlineExceededError, InvalidRequestError, ServiceUnavailableError
from services.experts.config import LoRAExpert
from services.experts.costs import resolve_costs
from services.experts.generation import GenerationEvent
from services.learner.feedback_store import FeedbackStore
from services.router.decision import RouteDecision
from services.router.front import PreparedQuery, RouterFront
from services.router.resolve import AUTO_MODEL, resolve_default, resolve_explicit
from services.telemetry.logs import join_serve_logs

logger = logging.getLogger(__name__)

ROUTER_DEPLOYMENT = "router"
READY_PROBE_S = 10
CLIENT_CLOSED_REQUEST = 499  # the status a request the client abandoned is counted under


class Ingress:
    """FastAPI routes of the coe-router application (wrapped by ``serve.ingress`` in the builder)."""

    def __init__(self, config: AppConfig, experts: dict[str, Any], router: Any = None, learner: Any = None) -> None:
        join_serve_logs()
        self._config = config
        self._experts = experts  # deployment name -> DeploymentHandle
        if router is None and config.router is not None and config.router.placement == "ingress":
            from deployments.router import InProcessRouter

            router = InProcessRouter(config)
        self._router = router  # the router's DeploymentHandle, or the in-process router; None without one
        # Decisions are cached here, in front of the router: a hit never reaches it.
        self._route_view = RouteView(config) if router is not None else None
        self._route_cache = RouteCache(config.cache) if router is not None else None
        if self._route_cache is not None:
            self._route_cache.check_redis_at_start()
        self._learner = learner  # DeploymentHandle of the online learner; off the request path, not in /readyz
        self._limiter = ConcurrencyLimiter(config.ingress.max_concurrent_requests, config.ingress.retry_after_s)
        self._calls = ExpertCaller(config, experts)
        self._draining = False
        self._costs = resolve_costs(config)
        self._created = now()
        self._feedback = FeedbackStore(config)
        self._gate = Gatekeeper(config)
        self._records = CompletionRecords(config, self._feedback, self._gate)
        if not self._gate.enabled:
            logger.info("auth is off: every endpoint answers without a key (auth.enabled: true or COE_AUTH=required turns it on)")

    # ------------------------------------------------------------------ every request
    async def serve_request(self, path: str, attribute: str, request: Request) -> Any:
        """Authenticate, count against the caller's limits, answer; the limits go out as OpenAI's headers.

        Chat requests are counted once their body is read, so that the prompt's tokens are
        charged with them (``chat_completions``). Every request is recorded once it ends (its
        metrics and log line, ``RequestRecord``); a stream, when its body ends.
        """
        record = RequestRecord(attribute, include_text=self._config.logging.include_text)
        request.state.record = record
        try:
            caller = await self._gate.caller(request.headers, path)
            request.state.caller = caller
            request.state.limits = None
            if attribute != "chat_completions":
                request.state.limits = await self._gate.charge(caller)
            response = await getattr(self, attribute)(request)
        except asyncio.CancelledError:  # the client left before the answer: nginx's "client closed request"
            record.finish(CLIENT_CLOSED_REQUEST, outcome="cancelled")
            raise
        except Exception as exc:
            error = as_coe_error(exc)
            record.finish(error.status_code, outcome="error", error=error.code)
            raise
        limits = request.state.limits
        if limits is not None:
            if not isinstance(response, Response):
                response = JSONResponse(response.model_dump(mode="json"))
            response.headers.update(limits.headers())
        if not isinstance(response, GuardedStreamingResponse):
            record.finish(response.status_code if isinstance(response, Response) else 200)
        return response

    # ------------------------------------------------------------------ health
    async def healthz(self, request: Request) -> dict[str, str]:
        return {"status": "ok"}

    async def readyz(self, request: Request) -> JSONResponse:
        """Every deployment answers; the reason a deployment does not is logged, not sent to anyone who asks."""

        async def probe(name: str, handle: Any) -> tuple[str, Any]:
            try:
                return name, await asyncio.wait_for(handle.ready.remote(), timeout=READY_PROBE_S)
            except asyncio.TimeoutError:
                return name, {"error": f"no answer within {READY_PROBE_S} s"}
            except Exception as exc:  # a replica that cannot answer is simply not ready
                logger.warning("readiness: deployment %s is not ready: %s: %s", name, exc.__class__.__name__, exc)
                return name, {"error": "not ready (the reason is in the service log)"}

        handles = dict(self._experts)
        if self._router is not None:
            handles[ROUTER_DEPLOYMENT] = self._router
        results = dict(await asyncio.gather(*(probe(name, handle) for name, handle in handles.items())))
        ready = all("error" not in result for result in results.values())
        body = {"status": "ready" if ready else "not_ready", "deployments": results, "expert_breakers": self._calls.breaker_states()}
        return JSONResponse(body, status_code=200 if ready else 503)

    async def drain(self) -> dict[str, Any]:
        """Shutdown's first step: refuse new requests (503), let those in flight finish, up to ``drain_s``."""
        self._draining = True
        loop = asyncio.get_running_loop()
        started = loop.time()
        while self._limiter.in_flight and loop.time() - started < self._config.ingress.drain_s:
            await asyncio.sleep(0.1)
        return {"in_flight_left": self._limiter.in_flight, "waited_s": round(loop.time() - started, 3)}

    def _refuse_if_draining(self) -> None:
        if self._draining:
            raise ServiceUnavailableError(
                "coe-router is shutting down and takes no new requests; retry the request", code="shutting_down"
            )

    def _admit(self) -> Slot:
        self._refuse_if_draining()
        return self._limiter.acquire()

    async def status(self, request: Request) -> JSONResponse:
        """``GET /admin/status``: this ingress replica's requests in flight, expert breakers, and engine counters."""

        async def engine(name: str, handle: Any) -> tuple[str, Any]:
            try:
                return name, await asyncio.wait_for(handle.stats.remote(), timeout=READY_PROBE_S)
            except Exception as exc:
                return name, {"error": exc.__class__.__name__}

        local = [self._config.deployment_name_for(base.name) for base in self._config.local_bases()]
        engines = dict(await asyncio.gather(*(engine(name, self._experts[name]) for name in local)))
        body = {
            "in_flight": self._limiter.in_flight,
            "limit": self._limiter.limit,
            "draining": self._draining,
            "expert_breakers": self._calls.breaker_states(),
            "engines": engines,
        }
        if self._router is not None:  # one router replica's decision batches: how well batching forms
            body["router"] = (await engine(ROUTER_DEPLOYMENT, self._router))[1]
        return JSONResponse(body)

    # ------------------------------------------------------------------ models
    async def models(self, request: Request) -> ModelList:
        cards = [ModelCard(id=AUTO_MODEL, created=self._created, kind="router", description="Routed per request.")]
        for expert in self._config.experts:
            cards.append(
                ModelCard(
                    id=expert.name,
                    created=self._created,
                    kind=expert.kind,
                    cost=self._costs.get(expert.name),
                    base=expert.base if isinstance(expert, LoRAExpert) else None,
                    description=expert.description,
                )
            )
        return ModelList(data=cards)

    # ------------------------------------------------------------------ routing
    async def route(self, request: ChatCompletionRequest, deadline: Deadline | None = None) -> RouteDecision:
        """The decision for a request: explicit, from the router, or the default expert."""
        if request.model != AUTO_MODEL:
            return resolve_explicit(self._config, request.model)
        if self._router is None:
            return resolve_default(self._config)
        messages = request.plain_messages()
        deadline = deadline or Deadline(self._config.ingress.timeouts)
        try:
            return await deadline.bounded(
                self._cached_route(messages, request), self._config.ingress.timeouts.route_s, "The router (ingress.timeouts.route_s)"
            )
        except DeadlineExceededError as exc:
            if exc.code == "deadline_exceeded":
                raise
            logger.warning("router too slow, answering with the default expert: %s", exc.message)
            return resolve_default(self._config, reason=f"router unavailable ({exc.message})")
        except Exception as exc:
            error = as_coe_error(exc)
            if error.status_code == 400:
                raise error from exc
            logger.warning("router unavailable, answering with the default expert: %s", error.message)
            return resolve_default(self._config, reason=f"router unavailable ({error.message})")

    async def _cached_route(self, messages: list[dict[str, str]], request: ChatCompletionRequest) -> RouteDecision:
        """From this replica's L1 or Redis when the serving version has decided it before, else from the router."""

        view, cache = self._route_view, self._route_cache
        assert view is not None and cache is not None
        front, revision = view.current()

        async def decide(front: RouterFront | None = None, query: PreparedQuery | None = None) -> RouteDecision:
            decision = await self._router.decide.remote(messages, request.coe)
            if front is not None and (decision.router_version, decision.policy_revision) != (front.version, revision):
                view.refresh()  # the router has swapped before this replica noticed: look now, not at the next interval
            return decision

        if front is None:
            return (await decide()).model_copy(update={"cache": "miss"})
        return await route_with_cache(cache, front, front.prepare(messages, request.coe), decide, revision)

    def _required_router(self, consequence: str = "") -> Any:
        """The router's handle, for endpoints that mean nothing without one (400 ``no_router``)."""
        if self._router is None:
            raise InvalidRequestError(f"no router is configured{consequence}", code="no_router")
        return self._router

    async def route_only(self, request: Request) -> JSONResponse:
        """``POST /v1/route``: the decision a chat request would get, without generating."""
        self._refuse_if_draining()
        chat = parse_chat_request(await self._body(request), self._config.ingress.limits, default_model=AUTO_MODEL)
        decision = await self.route(chat.model_copy(update={"model": AUTO_MODEL}))
        request.state.record.routed(decision)
        return JSONResponse(decision.model_dump(mode="json"), headers=decision.headers())

    async def flush_cache(self, request: Request) -> JSONResponse:
        """``POST /admin/cache/flush`` with ``{"version"?: ..., "levels"?: ["l1", "redis"]}``."""
        flush = parse_cache_flush(await self._body(request))
        return JSONResponse(await self._required_cache().flush(flush.version, tuple(flush.levels)))

    async def cache_stats(self, request: Request) -> JSONResponse:
        cache = self._required_cache()
        await cache.drain()
        return JSONResponse(cache.stats())

    def _required_cache(self) -> RouteCache:
        """The route cache, for endpoints that mean nothing without a router (400 ``no_router``)."""
        self._required_router(", so nothing is cached")
        assert self._route_cache is not None
        return self._route_cache

    async def metrics(self, request: Request) -> Response:
        """Prometheus text: every replica's metrics, from each node's Ray exporter (``metrics_export``)."""
        from prometheus_client import CONTENT_TYPE_LATEST

        return Response(await cluster_metrics(), media_type=CONTENT_TYPE_LATEST)

    async def _body(self, request: Request) -> bytes:
        return await read_body(request, self._config.ingress.max_body_bytes)

    async def reload_router(self, request: Request) -> JSONResponse:
        """``POST /admin/router/reload``: check the store's pointer now (a router replica and this ingress)."""
        result = await self._required_router().reload.remote()
        assert self._route_view is not None
        self._route_view.refresh()
        return JSONResponse(result)

    # ------------------------------------------------------------------ online learning
    async def learner_status(self, request: Request) -> JSONResponse:
        """``GET /admin/learner/status``: what the learner has applied, its checkpoint, its policy."""
        if self._learner is None:
            raise InvalidRequestError("the online learner is not running (learner.enabled is false or no router)", code="no_learner")
        try:
            return JSONResponse(await self._learner.status.remote())
        except Exception as exc:
            raise ServiceUnavailableError(f"the learner does not answer: {as_coe_error(exc).message}") from exc

    async def policy(self, request: Request) -> JSONResponse:
        """``GET /admin/policy``: the routing policy (static or online, and its revision) a router replica serves."""
        return JSONResponse(await self._required_router().policy.remote())

    async def reload_policy(self, request: Request) -> JSONResponse:
        """``POST /admin/policy/reload``: make a router replica (and this ingress) check the learner's policy pointer now."""
        result = await self._required_router().reload_policy.remote()
        assert self._route_view is not None
        self._route_view.refresh()
        return JSONResponse(result)

    # ------------------------------------------------------------------ feedback
    async def feedback(self, request: Request) -> JSONResponse:
        """``POST /v1/feedback``: a rating or score of an earlier completion, appended to the stream once."""
        self._refuse_if_draining()
        feedback = parse_feedback(await self._body(request), self._config)
        receipt = await self._feedback.accept(feedback, key_id=request.state.caller.key_id)
        return JSONResponse(receipt.model_dump(mode="json"))

    # ------------------------------------------------------------------ chat
    async def chat_completions(self, request: Request) -> Response:
        slot = self._admit()
        handed_to_response = False
        try:
            chat = await self._parse_and_charge(request)
            deadline = Deadline(self._config.ingress.timeouts)
            record: RequestRecord = request.state.record
            if record.include_text:
                record.prompt = chat.plain_messages()
            decision = await self.route(chat, deadline)
            record.routed(decision)
            answer = await self._calls.open(chat, decision, deadline, routed=chat.model == AUTO_MODEL)
            record.first_token(answer.decision)
            record.text(answer.first.text)
            completion_id = new_completion_id()
            if chat.stream:
                response = self._stream(chat, answer, completion_id, slot, request)
                handed_to_response = True
                return response
            return await self._complete(chat, answer, completion_id, request)
        except CoeError:
            raise
        except Exception as exc:
            raise as_coe_error(exc) from exc
        finally:
            if not handed_to_response:
                slot.release()

    async def _parse_and_charge(self, request: Request) -> ChatCompletionRequest:
        """The chat request, charged to its key: one request, and its prompt's estimated tokens."""
        try:
            chat = parse_chat_request(await self._body(request), self._config.ingress.limits)
        except CoeError:
            request.state.limits = await self._gate.charge(request.state.caller)  # a bad request still counts
            raise
        estimate = estimated_tokens([message.text() for message in chat.messages])
        request.state.limits = await self._gate.charge(request.state.caller, estimate)
        request.state.estimated_tokens = estimate
        return chat

    async def _complete(self, chat: ChatCompletionRequest, answer: ExpertStream, completion_id: str, request: Request) -> JSONResponse:
        texts = [answer.first.text]
        event = answer.first
        try:
            while event.finish_reason is None:
                event = await answer.next()
                texts.append(event.text)
        finally:
            if event.finish_reason is None:  # failed or the client left: stop generating for nobody
                answer.cancel()
        record: RequestRecord = request.state.record
        record.text("".join(texts[1:]))
        record.final = event
        decision = answer.decision
        completion = ChatCompletion(
            id=completion_id,
            created=now(),
            model=decision.expert,
            choices=[Choice(message=AssistantMessage(content="".join(texts)), finish_reason=event.finish_reason)],
            usage=usage_of(event),
            route=decision,
        )
        await self._records.completed(
            chat, decision, completion_id, completion.created, request.state.caller, request.state.estimated_tokens, event
        )
        return JSONResponse(completion.model_dump(mode="json"), headers=decision.headers())

    def _stream(
        self, chat: ChatCompletionRequest, answer: ExpertStream, completion_id: str, slot: Slot, request: Request
    ) -> GuardedStreamingResponse:
        created = now()
        finished = False
        record: RequestRecord = request.state.record

        async def next_event() -> GenerationEvent:
            event = await answer.next()
            record.text(event.text)
            return event

        async def on_finished(final: GenerationEvent) -> None:
            nonlocal finished
            finished = True
            record.final = final
            await self._records.completed(
                chat, answer.decision, completion_id, created, request.state.caller, request.state.estimated_tokens, final
            )

        def on_close() -> None:
            if not finished:
                answer.cancel()
            slot.release()
            record.finish(200, outcome="answered" if finished else "incomplete")

        body = chat_events(
            completion_id=completion_id, created=created, decision=answer.decision, first=answer.first,
            next_event=next_event, include_usage=chat.include_usage_chunk, on_finished=on_finished,
        )
        return GuardedStreamingResponse(body, on_close=on_close, media_type="text/event-stream", headers=answer.decision.headers())


ROUTES: tuple[tuple[str, str, str], ...] = (
    ("GET", "/healthz", "healthz"),
    ("GET", "/readyz", "readyz"),
    ("GET", "/v1/models", "models"),
    ("POST", "/v1/chat/completions", "chat_completions"),
    ("POST", "/v1/route", "route_only"),
    ("POST", "/v1/feedback", "feedback"),
    ("GET", "/admin/learner/status", "learner_status"),
    ("GET", "/admin/policy", "policy"),
    ("POST", "/admin/policy/reload", "reload_policy"),
    ("POST", "/admin/router/reload", "reload_router"),
    ("POST", "/admin/cache/flush", "flush_cache"),
    ("GET", "/admin/cache/stats", "cache_stats"),
    ("GET", "/admin/status", "status"),
    ("GET", "/metrics", "metrics"),
)


PATH_OF = {attribute: path for _, path, attribute in ROUTES}


def _delegate(attribute: str) -> Any:
    """A route function that calls the named method of this replica's ingress instance.

    Routes are plain functions rather than FastAPI class-based views, which need route
    re-analysis that newer FastAPI versions no longer do for included routers.
    """
    from ray import serve

    path = PATH_OF[attribute]

    async def endpoint(request: Request) -> Any:
        ingress = serve.get_replica_context().servable_object
        return await ingress.serve_request(path, attribute, request)

    endpoint.__name__ = attribute
    return endpoint


def build_api() -> FastAPI:
    """The FastAPI app, built in the replica (Serve calls this builder at replica start)."""
    app = FastAPI(
        title="coe-router",
        description="OpenAI-compatible Composition-of-Experts routing service.",
        version="0.1.0",
    )
    install_error_handlers(app)
    for method, path, attribute in ROUTES:
        app.add_api_route(path, _delegate(attribute), methods=[method])
    from deployments.http_api.openapi import install_openapi

    install_openapi(app)  # /openapi.json: each route's real request body, responses and bearer security
    return app


def make_ingress() -> type:
    """The ingress class wrapped with the app builder, ready for ``serve.deployment``."""
    from ray import serve

    return serve.ingress(build_api)(Ingress)
