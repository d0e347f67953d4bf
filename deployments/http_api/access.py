"""Who may call what, and how often: API keys and per-key rate limits at the ingress.

Each route has an access level: ``public`` (health probes), ``admin`` (``/admin/*``) or ``user``
(everything else; an admin key is a user key too). With auth off every route is public and
nothing is counted, which is what a laptop's ``make run`` wants.
"""

from __future__ import annotations

import math
from typing import Any

from services.auth.authenticate import ANONYMOUS, Access, Caller, build_authenticator
from services.auth.rate_limit import LimitState, RateLimiter
from services.cache.connection import async_client
from services.config import AppConfig

PUBLIC_PATHS = frozenset({"/healthz", "/readyz"})
AUTH_REDIS_TIMEOUT_S = 0.5
CHARS_PER_TOKEN = 4  # the admission estimate of a prompt's tokens, corrected when the answer ends


def access_of(path: str, config: AppConfig) -> Access:
    if path in PUBLIC_PATHS or (path == "/metrics" and config.auth.public_metrics):
        return "public"
    return "admin" if path.startswith("/admin/") else "user"


def estimated_tokens(texts: list[str]) -> int:
    return math.ceil(sum(len(text) for text in texts) / CHARS_PER_TOKEN)


class Gatekeeper:
    """Authentication and rate limits of one ingress replica (both share one Redis client)."""

    def __init__(self, config: AppConfig) -> None:
        self.enabled = config.auth.required()
        self._config = config
        if self.enabled:
            client = async_client(config.cache, timeout_s=AUTH_REDIS_TIMEOUT_S)
            self._authenticator = build_authenticator(config.auth, client)
            self._limiter = RateLimiter(config.auth.namespace, client)

    async def caller(self, headers: Any, path: str) -> Caller:
        if not self.enabled:
            return ANONYMOUS
        return await self._authenticator.caller(headers.get("authorization"), access_of(path, self._config))

    async def charge(self, caller: Caller, tokens: int = 0) -> LimitState | None:
        """One request (and ``tokens``) against the caller's limits; raises 429 when spent."""
        if caller.record is None:
            return None
        return await self._limiter.admit(caller.record, tokens)

    async def correct(self, caller: Caller, estimated: int, actual: int) -> None:
        if caller.record is not None:
            await self._limiter.correct(caller.record, actual - estimated)
