"""Request ids: every request has one, echoed as ``x-request-id`` and in every log line it causes.

Serve itself gives each HTTP request an id (or keeps the client's ``x-request-id``), returns it
in the response's ``x-request-id``, and carries it to every deployment the request reaches, where
the JSON logs tag each line with it. What Serve does not do is check a client's id: a header of
kilobytes or of odd characters would end up in every log line. The proxy middleware here drops
such an id before Serve reads it, so Serve gives that request an id of its own.

Serve's proxies load it from ``RAY_SERVE_HTTP_PROXY_CALLBACK_IMPORT_PATH`` (set for local runs by
``deployments.local.SERVE_ENVIRONMENT``, and in the Kubernetes manifests).
"""

from __future__ import annotations

import re
from typing import Any

REQUEST_ID_HEADER = b"x-request-id"
SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:/+=-]{0,127}")
PROXY_CALLBACK = "deployments.http_api.request_ids:proxy_middlewares"


def is_sane(request_id: str) -> bool:
    """1 to 128 characters: letters, digits and ``._:/+=-`` (UUIDs, ULIDs, trace ids, base64)."""
    return SANE_REQUEST_ID.fullmatch(request_id) is not None


class DropInsaneRequestIds:
    """ASGI middleware: a client's ``x-request-id`` that is not sane is removed from the request."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope.get("type") in ("http", "websocket"):
            headers = scope.get("headers") or []
            kept = [(name, value) for name, value in headers if name.lower() != REQUEST_ID_HEADER or self._sane(value)]
            if len(kept) != len(headers):
                scope = {**scope, "headers": kept}
        await self.app(scope, receive, send)

    @staticmethod
    def _sane(value: bytes) -> bool:
        try:
            return is_sane(value.decode("ascii"))
        except UnicodeDecodeError:
            return False


def proxy_middlewares() -> list[Any]:
    """What Serve's proxy callback returns: the middlewares placed in front of every request."""
    from starlette.middleware import Middleware

    return [Middleware(DropInsaneRequestIds)]
