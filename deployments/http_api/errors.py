"""Every error the ingress answers with, rendered once, in OpenAI's shape.

Errors raised in a replica arrive wrapped by Ray; ``as_coe_error`` finds the domain error inside,
so a client sees the expert's own message and status, never a Ray traceback.
"""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from services.errors import CoeError, OverloadedError, ServiceUnavailableError, error_body

logger = logging.getLogger(__name__)


def as_coe_error(exc: BaseException) -> CoeError:
    """The domain error inside ``exc``; Ray's wrapper also passes ``isinstance`` checks for the
    original class, but only the original (its ``cause``) carries the instance attributes, such
    as an upstream's status."""
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
    headers = dict(getattr(error, "headers", None) or {})
    if retry_after_s is not None:
        headers["Retry-After"] = str(retry_after_s)
    if error.status_code == 401:
        headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(error.to_body(), status_code=error.status_code, headers=headers or None)


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


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(CoeError, _coe_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(Exception, _unexpected)
