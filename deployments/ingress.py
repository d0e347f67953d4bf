"""The HTTP ingress: OpenAI-compatible routes over the expert deployments.

It parses and validates requests, decides the route, calls the expert deployment through its
handle, and renders results (and every error) in OpenAI's format. It holds no model.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
from typing import Any, AsyncIterator, Awaitable

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.api.schemas import (
    AssistantMessage,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    Choice,
    ChunkChoice,
    Delta,
    ModelCard,
    ModelList,
    Usage,
    new_completion_id,
    now,
    parse_cache_flush,
    parse_chat_request,
    parse_feedback,
)
from services.config import AppConfig
from services.errors import CoeError, InvalidRequestError, OverloadedError, ServiceUnavailableError, error_body
from services.experts.config import LoRAExpert
from services.experts.costs import resolve_costs
from services.experts.generation import GenerationEvent, build_generation_request
from services.learner.events import ChatTurn, CompletionRecord, ShadowRequest
from services.learner.feedback_store import FeedbackStore
from services.router.decision import RouteDecision
from services.router.resolve import AUTO_MODEL, resolve_default, resolve_explicit

logger = logging.getLogger(__name__)

ROUTER_DEPLOYMENT = "router"
RECORD_HEAD_START_S = 0.05  # how long a response may wait for its completion record to be stored


def as_coe_error(exc: BaseException) -> CoeError:
    """Errors raised in a replica arrive wrapped by Ray; find the domain error inside.

    Ray's wrapper also passes ``isinstance`` checks for the original class, but only the
    original (its ``cause``) carries the instance attributes, such as an upstream's status.
    """
    seen: BaseException | None = exc
    for _ in range(8):
        if seen is None:
            break
        cause = getattr(seen, "cause", None)
        if isinstance(cause, BaseException):
            seen = cause
        if isinstance(seen, CoeError):
            return seen
        seen = seen.__cause__
    from ray import exceptions as ray_exceptions

    if isinstance(exc, (ray_exceptions.RayActorError, ray_exceptions.ActorUnavailableError)):
        return ServiceUnavailableError("an expert replica is restarting; retry the request")
    try:
        from ray.serve.exceptions import BackPressureError

        if isinstance(exc, BackPressureError):
            return OverloadedError("the expert's queue is full; retry later")
    except ImportError:  # pragma: no cover - older Ray
        pass
    logger.exception("unexpected error", exc_info=exc)
    return CoeError(f"internal error: {exc.__class__.__name__}")


def error_response(error: CoeError) -> JSONResponse:
    retry_after_s = getattr(error, "retry_after_s", None)
    if retry_after_s is None and error.status_code in (429, 503):
        retry_after_s = 1
    headers = {"Retry-After": str(retry_after_s)} if retry_after_s is not None else None
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers)


async def _coe_error(request: Request, exc: CoeError) -> JSONResponse:
    return error_response(exc)


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    param = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    message = f"Invalid value for '{param}': {first.get('msg', 'invalid')}" if param else "Invalid request."
    return JSONResponse(error_body(message, "invalid_request_error", param), status_code=400)


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    kind = "invalid_request_error" if exc.status_code < 500 else "api_error"
    message = f"{request.method} {request.url.path}: {exc.detail}"
    return JSONResponse(error_body(message, kind), status_code=exc.status_code)


async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
    return error_response(as_coe_error(exc))


class ConcurrencyLimiter:
    """Counts chat requests in flight; over the limit the request gets 429 at once."""

    def __init__(self, limit: int, retry_after_s: int) -> None:
        self.limit = limit
        self.retry_after_s = retry_after_s
        self.in_flight = 0

    def acquire(self) -> None:
        if self.in_flight >= self.limit:
            raise OverloadedError(
                f"coe-router is at its limit of {self.limit} concurrent requests; retry after a moment",
                retry_after_s=self.retry_after_s,
            )
        self.in_flight += 1

    def release(self) -> None:
        self.in_flight -= 1


class BackgroundWrites:
    """Completion records and shadow samples, written after the response without delaying it.

    A failed write is logged once per burst of failures (the first, then nothing until a write
    succeeds again), so a Redis outage gives one warning instead of one per request.
    """

    def __init__(self) -> None:
        self._tasks: set[asyncio.Task[None]] = set()
        self._failing = False
        self._failures = 0

    def start(self, write: Awaitable[None], what: str) -> asyncio.Task[None]:
        task = asyncio.get_running_loop().create_task(self._run(write, what))
        self._tasks.add(task)  # a task nobody references may be garbage-collected mid-write
        task.add_done_callback(self._tasks.discard)
        return task

    async def _run(self, write: Awaitable[None], what: str) -> None:
        try:
            await write
        except Exception as exc:  # never raised: the client already has its answer
            self._failures += 1
            if not self._failing:
                self._failing = True
                detail = exc.message if isinstance(exc, CoeError) else f"{exc.__class__.__name__}: {exc}"
                logger.warning("could not store %s (%s); further failures are not logged until a write succeeds", what, detail)
            return
        if self._failing:
            logger.info("completion records are stored again (%d writes failed meanwhile)", self._failures)
            self._failing = False
            self._failures = 0


class Ingress:
    """FastAPI routes of the coe-router application (wrapped by ``serve.ingress`` in the builder)."""

    def __init__(self, config: AppConfig, experts: dict[str, Any], router: Any = None, learner: Any = None) -> None:
        self._config = config
        self._experts = experts  # deployment name -> DeploymentHandle
        self._router = router  # DeploymentHandle of the router, when one is configured
        self._learner = learner  # DeploymentHandle of the online learner; off the request path, not in /readyz
        self._limiter = ConcurrencyLimiter(config.ingress.max_concurrent_requests, config.ingress.retry_after_s)
        self._costs = resolve_costs(config)
        self._created = now()
        self._feedback = FeedbackStore(config)
        self._writes = BackgroundWrites()
        self._rng = random.Random()

    # ------------------------------------------------------------------ health
    async def healthz(self, request: Request) -> dict[str, str]:
        return {"status": "ok"}

    async def readyz(self, request: Request) -> JSONResponse:
        async def probe(name: str, handle: Any) -> tuple[str, Any]:
            try:
                return name, await asyncio.wait_for(handle.ready.remote(), timeout=10)
            except Exception as exc:  # a replica that cannot answer is simply not ready
                return name, {"error": f"{exc.__class__.__name__}: {exc}"[:300]}

        handles = dict(self._experts)
        if self._router is not None:
            handles[ROUTER_DEPLOYMENT] = self._router
        results = dict(await asyncio.gather(*(probe(name, handle) for name, handle in handles.items())))
        ready = all("error" not in result for result in results.values())
        body = {"status": "ready" if ready else "not_ready", "deployments": results}
        return JSONResponse(body, status_code=200 if ready else 503)

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
    async def route(self, request: ChatCompletionRequest) -> RouteDecision:
        """The decision for a request: explicit, from the router, or the default expert."""
        if request.model != AUTO_MODEL:
            return resolve_explicit(self._config, request.model)
        if self._router is None:
            return resolve_default(self._config)
        messages = [{"role": message.role, "content": message.text()} for message in request.messages]
        try:
            return await self._router.route.remote(messages, request.coe)
        except Exception as exc:
            error = as_coe_error(exc)
            if error.status_code == 400:
                raise error from exc
            logger.warning("router unavailable, answering with the default expert: %s", error.message)
            return resolve_default(self._config, reason=f"router unavailable ({error.message})")

    def _required_router(self, consequence: str = "") -> Any:
        """The router's handle, for endpoints that mean nothing without one (400 ``no_router``)."""
        if self._router is None:
            raise InvalidRequestError(f"no router is configured{consequence}", code="no_router")
        return self._router

    async def route_only(self, request: Request) -> JSONResponse:
        """``POST /v1/route``: the decision a chat request would get, without generating."""
        chat = parse_chat_request(await request.body(), default_model=AUTO_MODEL)
        decision = await self.route(chat.model_copy(update={"model": AUTO_MODEL}))
        return JSONResponse(decision.model_dump(mode="json"), headers=decision.headers())

    async def flush_cache(self, request: Request) -> JSONResponse:
        """``POST /admin/cache/flush`` with ``{"version"?: ..., "levels"?: ["l1", "redis"]}``."""
        flush = parse_cache_flush(await request.body())
        return JSONResponse(await self._required_router(", so nothing is cached").flush_cache.remote(flush.version, tuple(flush.levels)))

    async def cache_stats(self, request: Request) -> JSONResponse:
        return JSONResponse(await self._required_router(", so nothing is cached").cache_stats.remote())

    async def metrics(self, request: Request) -> Response:
        """Prometheus text: the router replica's cache metrics."""
        from prometheus_client import CONTENT_TYPE_LATEST

        body = await self._router.metrics.remote() if self._router is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    async def reload_router(self, request: Request) -> JSONResponse:
        """``POST /admin/router/reload``: check the store's pointer now."""
        return JSONResponse(await self._required_router().reload.remote())

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
        """``POST /admin/policy/reload``: make a router replica check the learner's policy pointer now."""
        return JSONResponse(await self._required_router().reload_policy.remote())

    # ------------------------------------------------------------------ feedback
    async def feedback(self, request: Request) -> JSONResponse:
        """``POST /v1/feedback``: a rating or score of an earlier completion, appended to the stream once."""
        feedback = parse_feedback(await request.body(), self._config)
        receipt = await self._feedback.accept(feedback)
        return JSONResponse(receipt.model_dump(mode="json"))

    async def _completed(self, chat: ChatCompletionRequest, decision: RouteDecision, completion_id: str, created: int) -> None:
        """Remember a finished completion for feedback (and maybe sample it for the shadow).

        The write gets a brief head start, so that feedback sent the moment the answer arrives
        finds its record; past ``RECORD_HEAD_START_S`` it goes on in the background. Nothing here
        may fail the response the client is about to get: problems are logged.
        """
        try:
            record = CompletionRecord(
                id=completion_id, created=created, requested_model=chat.model, expert=decision.expert, decision=decision
            )
            shadow = None
            if self._samples_shadow(decision) and self._rng.random() < self._config.learner.shadow.sample_rate:
                turns = tuple(ChatTurn(role=message.role, content=message.text()) for message in chat.messages)
                shadow = ShadowRequest(completion_id=completion_id, messages=turns, record=record)
        except Exception:
            logger.warning("could not build the record of completion %s", completion_id, exc_info=True)
            return
        task = self._writes.start(self._store_completion(record, shadow), f"completion {completion_id}")
        await asyncio.wait({task}, timeout=RECORD_HEAD_START_S)

    def _samples_shadow(self, decision: RouteDecision) -> bool:
        """Only routed requests are evaluated in the shadow, and only when there are experts to compare."""
        learner = self._config.learner
        return (
            decision.policy in ("static", "online")
            and learner.enabled
            and learner.shadow.sample_rate > 0
            and len(self._config.experts) >= 2
        )

    async def _store_completion(self, record: CompletionRecord, shadow: ShadowRequest | None) -> None:
        await self._feedback.remember(record)
        if shadow is not None:
            await self._feedback.enqueue_shadow(shadow)

    # ------------------------------------------------------------------ chat
    async def chat_completions(self, request: Request) -> Response:
        self._limiter.acquire()
        handed_to_stream = False
        try:
            chat = parse_chat_request(await request.body())
            decision = await self.route(chat)
            expert = self._config.expert(decision.expert)
            generation = build_generation_request(chat, expert.name, expert.generation)
            handle = self._experts[self._config.deployment_name_for(expert.name)]
            adapter_id = expert.name if isinstance(expert, LoRAExpert) else ""
            stream = handle.options(stream=True, multiplexed_model_id=adapter_id).generate.remote(generation)
            try:
                first = await stream.__anext__()
            except StopAsyncIteration:
                raise ServiceUnavailableError(f"expert '{expert.name}' returned no output") from None
            except Exception as exc:
                raise as_coe_error(exc) from exc
            completion_id = new_completion_id()
            if chat.stream:
                handed_to_stream = True
                body = self._sse(chat, decision, completion_id, first, stream)
                return StreamingResponse(body, media_type="text/event-stream", headers=decision.headers())
            return await self._complete(chat, decision, completion_id, first, stream)
        except CoeError:
            raise
        except Exception as exc:
            raise as_coe_error(exc) from exc
        finally:
            if not handed_to_stream:
                self._limiter.release()

    async def _complete(
        self, chat: ChatCompletionRequest, decision: RouteDecision, completion_id: str, first: GenerationEvent, stream: Any
    ) -> JSONResponse:
        texts = [first.text]
        event = first
        try:
            while event.finish_reason is None:
                event = await stream.__anext__()
                texts.append(event.text)
        except Exception as exc:
            raise as_coe_error(exc) from exc
        finally:
            if event.finish_reason is None:  # failed or the client left: stop generating for nobody
                stream.cancel()
        completion = ChatCompletion(
            id=completion_id,
            created=now(),
            model=decision.expert,
            choices=[Choice(message=AssistantMessage(content="".join(texts)), finish_reason=event.finish_reason)],
            usage=_usage(event),
            route=decision,
        )
        await self._completed(chat, decision, completion_id, completion.created)
        return JSONResponse(completion.model_dump(mode="json"), headers=decision.headers())

    async def _sse(
        self, chat: ChatCompletionRequest, decision: RouteDecision, completion_id: str, first: GenerationEvent, stream: Any
    ) -> AsyncIterator[str]:
        created = now()

        def sse(chunk: ChatCompletionChunk) -> str:
            # Like OpenAI: null finish_reason is sent, absent usage/route and unset delta fields are not.
            payload = chunk.model_dump(mode="json")
            for key in ("usage", "route"):
                if payload[key] is None:
                    del payload[key]
            for choice in payload["choices"]:
                choice["delta"] = {key: value for key, value in choice["delta"].items() if value is not None}
            return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"

        def delta_chunk(delta: Delta, finish: Any = None, route: RouteDecision | None = None) -> str:
            choice = ChunkChoice(delta=delta, finish_reason=finish)
            return sse(ChatCompletionChunk(id=completion_id, created=created, model=decision.expert, choices=[choice], route=route))

        finished = False
        try:
            yield delta_chunk(Delta(role="assistant", content=""))
            event = first
            while True:
                if event.text:
                    yield delta_chunk(Delta(content=event.text))
                if event.finish_reason is not None:
                    finished = True
                    await self._completed(chat, decision, completion_id, created)  # before the yield: the client may leave
                    yield delta_chunk(Delta(), event.finish_reason, route=decision)
                    if chat.include_usage_chunk:
                        yield sse(
                            ChatCompletionChunk(
                                id=completion_id, created=created, model=decision.expert, choices=[], usage=_usage(event)
                            )
                        )
                    break
                event = await stream.__anext__()
        except Exception as exc:  # headers are already sent: report the failure in-stream, as OpenAI does
            yield f"data: {json.dumps(as_coe_error(exc).to_body())}\n\n"
        finally:
            if not finished:
                stream.cancel()
            self._limiter.release()
        yield "data: [DONE]\n\n"


def _usage(event: GenerationEvent) -> Usage:
    return Usage(
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.prompt_tokens + event.completion_tokens,
    )


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
    ("GET", "/metrics", "metrics"),
)


def _delegate(attribute: str) -> Any:
    """A route function that calls the named method of this replica's ingress instance.

    Routes are plain functions rather than FastAPI class-based views, which need route
    re-analysis that newer FastAPI versions no longer do for included routers.
    """
    from ray import serve

    async def endpoint(request: Request) -> Any:
        ingress = serve.get_replica_context().servable_object
        return await getattr(ingress, attribute)(request)

    endpoint.__name__ = attribute
    return endpoint


def build_api() -> FastAPI:
    """The FastAPI app, built in the replica (Serve calls this builder at replica start)."""
    app = FastAPI(
        title="coe-router",
        description="OpenAI-compatible Composition-of-Experts routing service.",
        version="0.1.0",
    )
    app.add_exception_handler(CoeError, _coe_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
    for method, path, attribute in ROUTES:
        app.add_api_route(path, _delegate(attribute), methods=[method])
    return app


def make_ingress() -> type:
    """The ingress class wrapped with the app builder, ready for ``serve.deployment``."""
    from ray import serve

    return serve.ingress(build_api)(Ingress)
