"""The service's OpenAPI document (``GET /openapi.json``), written from the real wire schemas.

The routes take a raw ``Request`` and parse the body themselves (``services.api.schemas``), so
that every problem becomes one OpenAI-style 400; FastAPI therefore cannot infer what a route
reads or answers. This module says it instead: each operation's request body and responses come
from the same pydantic models that parse and render them, so the document cannot drift from
the code, and a client generator or a fuzzer (``coe bench fuzz``) reading it reaches past
validation into the service.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, Literal

from fastapi import FastAPI
from fastapi.routing import APIRoute
from pydantic import BaseModel, Field
from pydantic.json_schema import models_json_schema

from deployments.http_api.access import PUBLIC_PATHS
from services.api.schemas import (
    CacheFlushRequest,
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    FeedbackReceipt,
    FeedbackRequest,
    ModelList,
)
from services.router.decision import RouteDecision

OPENAPI_VERSION = "3.1.0"
BEARER_SCHEME = "bearerAuth"
SCHEMA_REF = "#/components/schemas/{model}"


class ErrorDetail(BaseModel):
    message: str = Field(description="What is wrong, naming the parameter or the limit.")
    type: str = Field(description="invalid_request_error, permission_error, rate_limit_error, api_error, service_unavailable, timeout_error.")
    param: str | None = Field(description="The request parameter at fault, e.g. `messages[0].role`.")
    code: str | None = Field(description="A stable, machine-readable reason, e.g. `invalid_api_key`.")


class ErrorResponse(BaseModel):
    """OpenAI's error body: every error of every endpoint has this shape."""

    error: ErrorDetail


@dataclass(frozen=True)
class Operation:
    """What one route reads and answers, beyond what FastAPI can see."""

    summary: str
    description: str = ""
    body: str | None = None  # component schema of the JSON request body
    body_required: bool = True
    ok: dict[str, Any] = field(default_factory=lambda: {"application/json": {"schema": {"type": "object"}}})
    ok_headers: tuple[str, ...] = ()
    errors: tuple[int, ...] = ()


ROUTE_HEADERS = ("x-coe-expert", "x-coe-policy", "x-coe-category", "x-coe-route-confidence", "x-coe-router-version",
                 "x-coe-policy-revision")
ERROR_DESCRIPTIONS = {
    400: "The request is malformed, asks for an unsupported parameter, or is over a configured limit; the message names which.",
    401: "No API key, or one the service does not know (when auth is on).",
    403: "The key's role may not use this endpoint (admin endpoints need an admin key).",
    404: "Unknown model, or unknown completion id.",
    413: "The body is over `ingress.max_body_bytes`.",
    429: "Over the concurrency limit or the key's rate limit; see Retry-After.",
    502: "An expert failed.",
    503: "An expert, Redis or the learner is unavailable, or the service is shutting down; see Retry-After.",
    504: "An expert did not answer in time, or the request outlived its deadline.",
}
AUTHENTICATED_ERRORS = (401, 403, 429)


def _json(ref: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": SCHEMA_REF.format(model=ref)}}}


OPERATIONS: dict[str, Operation] = {
    "healthz": Operation(
        "Liveness", "The ingress answers.",
        ok={"application/json": {"schema": {"type": "object", "properties": {"status": {"const": "ok"}}, "required": ["status"]}}},
    ),
    "readyz": Operation(
        "Readiness", "200 only when every expert deployment has loaded and answers; 503 otherwise, with each deployment's state.",
        ok={"application/json": {"schema": {"type": "object", "properties": {
            "status": {"enum": ["ready", "not_ready"]}, "deployments": {"type": "object"}, "expert_breakers": {"type": "object"}}}}},
        errors=(503,),
    ),
    "models": Operation("List models", "`auto` and every configured expert.", ok=_json("ModelList")),
    "chat_completions": Operation(
        "Chat completion",
        "OpenAI chat completions. With `stream: true` the answer is Server-Sent Events: `data:` lines each holding a "
        "`ChatCompletionChunk`, the last chunk carrying `route`, then `data: [DONE]`; an error after the stream has "
        "started arrives as a `data: {\"error\": …}` event. A routed request (`model: auto`) needs text in its last "
        "user message (else 400 `empty_routing_input`); each request is bounded by `ingress.limits` (400 naming the limit).",
        body="ChatCompletionRequest",
        ok={**_json("ChatCompletion"), "text/event-stream": {"schema": {"type": "string"}}},
        ok_headers=ROUTE_HEADERS,
        errors=(400, 404, 413, 502, 503, 504),
    ),
    "route_only": Operation(
        "Routing decision (dry run)",
        "The decision a chat request with the same body would get, without generating. Only `messages` and `coe` are "
        "read; the last user message needs text (else 400 `empty_routing_input`).",
        body="RouteRequest", ok=_json("RouteDecision"), ok_headers=ROUTE_HEADERS, errors=(400, 404, 413, 503),
    ),
    "feedback": Operation(
        "Feedback on a completion",
        "A rating or score of an earlier completion, for the online learner. A repeat is not an error.",
        body="FeedbackRequest", ok=_json("FeedbackReceipt"), errors=(400, 404, 413, 503),
    ),
    "learner_status": Operation("Online learner status", errors=(400, 503)),
    "policy": Operation("Routing policy served", errors=(400, 503)),
    "reload_policy": Operation("Reload the routing policy", errors=(400, 503)),
    "reload_router": Operation("Reload the router version", errors=(400, 503)),
    "flush_cache": Operation(
        "Flush the route cache", "An empty body flushes every level and version.",
        body="CacheFlushRequest", body_required=False, errors=(400, 413, 503),
    ),
    "cache_stats": Operation("Route cache statistics", errors=(400,)),
    "status": Operation("This ingress replica's status", "Requests in flight, breakers, engine counters."),
    "metrics": Operation("Prometheus metrics", ok={"text/plain": {"schema": {"type": "string"}}}),
}


def component_schemas() -> dict[str, Any]:
    """Every wire model's JSON schema, with references resolving under ``components/schemas``."""
    models: list[tuple[type[BaseModel], Literal["validation", "serialization"]]] = [
        (ChatCompletionRequest, "validation"), (FeedbackRequest, "validation"), (CacheFlushRequest, "validation"),
        (ChatCompletion, "serialization"), (ChatCompletionChunk, "serialization"), (RouteDecision, "serialization"),
        (FeedbackReceipt, "serialization"), (ModelList, "serialization"), (ErrorResponse, "serialization"),
    ]
    _, top = models_json_schema(models, ref_template=SCHEMA_REF)
    schemas: dict[str, Any] = top["$defs"]
    # /v1/route takes a chat request whose `model` may be left out (it is always routed).
    route = copy.deepcopy(schemas["ChatCompletionRequest"])
    route["required"] = [name for name in route.get("required", []) if name != "model"]
    route["title"] = "RouteRequest"
    route["description"] = "A chat request's body; `model` may be left out, only `messages` and `coe` are read."
    schemas["RouteRequest"] = route
    return schemas


def _operation(name: str, path: str, method: str) -> dict[str, Any]:
    spec = OPERATIONS[name]
    headers = {header: {"schema": {"type": "string"}} for header in spec.ok_headers}
    responses: dict[str, Any] = {"200": {"description": "OK", "content": spec.ok, **({"headers": headers} if headers else {})}}
    errors = set(spec.errors) | (set() if path in PUBLIC_PATHS else set(AUTHENTICATED_ERRORS))
    for status in sorted(errors):
        response: dict[str, Any] = {"description": ERROR_DESCRIPTIONS[status], "content": _json("ErrorResponse")}
        if status in (429, 503):
            response["headers"] = {"Retry-After": {"schema": {"type": "integer"}, "description": "Seconds to wait."}}
        responses[str(status)] = response
    operation: dict[str, Any] = {"operationId": name, "summary": spec.summary, "responses": responses}
    if spec.description:
        operation["description"] = spec.description
    if spec.body is not None:
        operation["requestBody"] = {"required": spec.body_required, "content": _json(spec.body)}
    if path in PUBLIC_PATHS:
        operation["security"] = []  # overrides the document-wide bearer requirement
    operation["tags"] = ["admin" if path.startswith("/admin/") else "health" if path in PUBLIC_PATHS else "v1"]
    return operation


def openapi_document(app: FastAPI) -> dict[str, Any]:
    """The whole document for ``app``'s routes; a route missing from ``OPERATIONS`` is a KeyError
    here, so a new endpoint cannot ship undocumented (tests build this document)."""
    paths: dict[str, dict[str, Any]] = {}
    for route in app.routes:
        if not isinstance(route, APIRoute) or not route.include_in_schema:
            continue
        for method in sorted(route.methods):
            paths.setdefault(route.path, {})[method.lower()] = _operation(route.name, route.path, method)
    return {
        "openapi": OPENAPI_VERSION,
        "info": {"title": app.title, "description": app.description, "version": app.version},
        "paths": paths,
        "components": {
            "schemas": component_schemas(),
            "securitySchemes": {
                BEARER_SCHEME: {
                    "type": "http", "scheme": "bearer",
                    "description": "`Authorization: Bearer <key>` with a key from `coe keys create`; needed when auth is on.",
                }
            },
        },
        "security": [{BEARER_SCHEME: []}],
    }


def install_openapi(app: FastAPI) -> None:
    """Serve :func:`openapi_document` as ``/openapi.json`` (and in ``/docs``), built once."""

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
