"""API keys: created once, shown once, kept in Redis only as their SHA-256.

A key is 256 random bits, so a plain SHA-256 of it cannot be reversed or guessed, and a lookup
by hash needs no salt or slow hash (the same reasoning GitHub and Stripe apply to their tokens).
Every ingress replica reads the same Redis, so a key created or revoked on one machine holds on
all of them.

Layout under ``auth.namespace`` (default ``coe:auth``)::

    {ns}:key:{sha256}   hash: name, role, rpm, tpm, created, last_used, key_id
    {ns}:name:{name}    the sha256 of the key with that name
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
import time
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

Role = Literal["user", "admin"]
KEY_PREFIX = "coe-"
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"
MIN_IMPORTED_KEY_LENGTH = 32
API_KEY_ENV = "COE_API_KEY"  # what the CLI, benchmarks and drills send to a running service


def service_headers() -> dict[str, str]:
    """The Authorization header for calls to a running service, from ``$COE_API_KEY`` (none if unset)."""
    key = os.environ.get(API_KEY_ENV)
    return {"Authorization": f"Bearer {key}"} if key else {}


class KeyRecord(BaseModel):
    """What the service knows about a key; never the key itself."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=NAME_PATTERN)
    role: Role = "user"
    rpm: int | None = Field(None, ge=1, description="Requests per minute; None: unlimited.")
    tpm: int | None = Field(None, ge=1, description="Chat tokens per minute; None: unlimited.")
    created: float
    last_used: float | None = None
    key_id: str = Field(description="A public id of the key (a prefix of its hash), stored with what it made.")

    def to_redis(self) -> dict[str, str]:
        return {name: "" if value is None else str(value) for name, value in self.model_dump().items()}

    @classmethod
    def from_redis(cls, raw: dict[Any, Any]) -> "KeyRecord":
        fields = {_text(name): _text(value) for name, value in raw.items()}
        return cls.model_validate({name: (value or None) for name, value in fields.items()})


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8")).hexdigest()


def new_key() -> str:
    return KEY_PREFIX + secrets.token_urlsafe(32)


def looks_like_a_key(value: str) -> bool:
    """Cheap shape check before any lookup: printable, no spaces, not absurdly long."""
    return 8 <= len(value) <= 256 and re.fullmatch(r"[\x21-\x7e]+", value) is not None


_TOUCH_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 1 then
  redis.call('HSET', KEYS[1], 'last_used', ARGV[1])
end
return 0
"""


class KeyExistsError(ValueError):
    pass


class KeyStore:
    """Create, list, revoke and look up keys; synchronous (the CLI) and asynchronous (the ingress) clients."""

    def __init__(self, namespace: str, client: Any) -> None:
        self._ns = namespace
        self._client = client
        self._touch: Any = None

    def _key(self, digest: str) -> str:
        return f"{self._ns}:key:{digest}"

    def _name(self, name: str) -> str:
        return f"{self._ns}:name:{name}"

    # ------------------------------------------------------------------ CLI (sync client)
    def create(self, name: str, role: Role = "user", rpm: int | None = None, tpm: int | None = None, key: str | None = None) -> tuple[str, KeyRecord]:
        """A new key and its record. ``key`` imports one given from outside (a Kubernetes Secret)."""
        if key is None:
            key = new_key()
        elif len(key) < MIN_IMPORTED_KEY_LENGTH or not looks_like_a_key(key):
            raise ValueError(f"an imported key must be at least {MIN_IMPORTED_KEY_LENGTH} printable characters without spaces")
        digest = key_hash(key)
        record = KeyRecord(name=name, role=role, rpm=rpm, tpm=tpm, created=time.time(), key_id=digest[:16])
        if not self._client.set(self._name(name), digest, nx=True):
            raise KeyExistsError(f"a key named {name!r} exists; revoke it first or choose another name")
        if not self._client.hsetnx(self._key(digest), "name", name):
            self._client.delete(self._name(name))
            raise KeyExistsError("this key is already registered under another name")
        self._client.hset(self._key(digest), mapping=record.to_redis())
        return key, record

    def list(self) -> list[KeyRecord]:
        records = []
        for name_key in sorted(self._client.scan_iter(match=self._name("*"), count=500)):
            digest = self._client.get(name_key)
            raw = self._client.hgetall(self._key(_text(digest))) if digest else None
            if raw:
                records.append(KeyRecord.from_redis(raw))
        return sorted(records, key=lambda record: record.created)

    def revoke(self, name: str) -> bool:
        digest = self._client.get(self._name(name))
        if digest is None:
            return False
        self._client.delete(self._key(_text(digest)), self._name(name))
        return True

    # ------------------------------------------------------------------ ingress (async client)
    async def lookup(self, key: str) -> KeyRecord | None:
        """The record of a presented key, or None when no such key exists (or it was revoked)."""
        digest = key_hash(key)
        raw = await self._client.hgetall(self._key(digest))
        if not raw:
            return None
        try:
            record = KeyRecord.from_redis(raw)
        except ValidationError:  # half-written or foreign: not a key this service made
            return None
        if not hmac.compare_digest(record.key_id, digest[:16]):  # a record stored under another hash
            return None
        return record

    async def touch(self, key: str, when: float) -> None:
        """Record use; only if the key still exists, so a revoked key is not brought back."""
        if self._touch is None:
            self._touch = self._client.register_script(_TOUCH_SCRIPT)
        await self._touch(keys=[self._key(key_hash(key))], args=[str(when)])
