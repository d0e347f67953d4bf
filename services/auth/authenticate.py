"""Who is calling: a bearer key checked against Redis, trusted for a short while once checked.

Authentication fails closed. A key this replica has not checked within ``auth.key_cache_ttl_s``
is looked up in Redis; if Redis does not answer, the request gets a 503 and is never let in.
A key checked recently is trusted without asking Redis again, so a Redis blip does not lock
out the keys in use, and a revoked key stops working on every replica within that time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import Any, Literal


from services.auth.config import AuthConfig
from services.auth.keys import KeyRecord, KeyStore, key_hash, looks_like_a_key
from services.errors import AuthenticationError, PermissionDeniedError, ServiceUnavailableError
from services.telemetry.metrics import AUTH_FAILURES

logger = logging.getLogger(__name__)

Access = Literal["public", "user", "admin"]

MISSING_KEY = (
    "You didn't provide an API key. Pass it in the Authorization header as 'Authorization: Bearer <key>' "
    "(`coe keys create` makes one)."
)
WRONG_KEY = "Incorrect API key provided. Ask an admin of this service for a key (`coe keys create`)."


@dataclass(frozen=True)
class Caller:
    """The key a request was made with; ``None`` when auth is off."""

    record: KeyRecord | None

    @property
    def key_id(self) -> str | None:
        return self.record.key_id if self.record is not None else None


ANONYMOUS = Caller(None)


class Authenticator:
    """Checks ``Authorization`` headers for one ingress replica."""

    def __init__(self, settings: AuthConfig, store: KeyStore) -> None:
        self._settings = settings
        self._store = store
        self._checked: dict[str, tuple[KeyRecord, float]] = {}  # key hash -> (record, trusted until)
        self._touches: set[asyncio.Task[None]] = set()

    async def caller(self, authorization: str | None, access: Access) -> Caller:
        """The caller of a request that needs ``access``; raises 401, 403 or 503."""
        if access == "public":
            return ANONYMOUS
        key = _bearer(authorization)
        if key is None:
            self._refuse("missing")
            raise AuthenticationError(MISSING_KEY)
        record = await self._record(key) if key else None
        if record is None:
            self._refuse("invalid")
            raise AuthenticationError(WRONG_KEY)
        if access == "admin" and record.role != "admin":
            self._refuse("forbidden")
            raise PermissionDeniedError(f"The key '{record.name}' has the role 'user'; this endpoint needs an admin key.")
        return Caller(record)

    async def _record(self, key: str) -> KeyRecord | None:
        digest = key_hash(key)
        now = time.monotonic()
        cached = self._checked.get(digest)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            record = await self._store.lookup(key)
        except Exception as exc:  # Redis is down or slow: the key cannot be checked, so it is not let in
            self._refuse("unavailable")
            logger.warning("auth: Redis did not answer a key lookup (%s)", exc.__class__.__name__)
            raise ServiceUnavailableError(
                "The API key cannot be checked right now (the key store does not answer); retry the request.",
                code="auth_unavailable",
            ) from exc
        if record is None:
            self._checked.pop(digest, None)
            return None
        if len(self._checked) > 10_000:  # many keys in turn: start over rather than grow without bound
            self._checked.clear()
        self._checked[digest] = (record, now + self._settings.key_cache_ttl_s)
        self._touch(key)
        return record

    def _touch(self, key: str) -> None:
        """Record the key's last use in the background; it is advisory, so a failure is only logged."""

        async def touch() -> None:
            try:
                await self._store.touch(key, time.time())
            except Exception as exc:
                logger.info("auth: could not record a key's last use (%s)", exc.__class__.__name__)

        task = asyncio.get_running_loop().create_task(touch())
        self._touches.add(task)
        task.add_done_callback(self._touches.discard)

    def _refuse(self, reason: str) -> None:
        AUTH_FAILURES.inc(reason=reason)


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    value = value.strip()
    if scheme.lower() != "bearer" or not value:
        return None
    return value if looks_like_a_key(value) else ""  # "" is a key no store holds: 401 as a wrong key


def build_authenticator(settings: AuthConfig, client: Any) -> Authenticator:
    return Authenticator(settings, KeyStore(settings.namespace, client))
