"""Route-cache settings. Secrets (the password) come from the environment, never from config."""

from __future__ import annotations

import os
import re
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator


class BreakerOptions(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    failure_threshold: int = Field(3, ge=1, description="Consecutive Redis failures that open the breaker.")
    open_s: float = Field(5.0, gt=0, description="How long an open breaker skips Redis before probing again.")


class CacheConfig(BaseModel):
    """Where decisions are cached and for how long."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = Field(True, description="False: every decision is computed (`cache: miss`).")
    url: str = Field("redis://127.0.0.1:6379/0", description="redis:// or rediss:// (TLS); $COE_REDIS_URL overrides.")
    url_env: str = Field("COE_REDIS_URL", description="Environment variable that overrides `url`.")
    password_env: str | None = Field(None, description="Environment variable holding the Redis password.")
    tls_ca_file: str | None = Field(None, description="CA bundle for rediss:// servers with a private CA.")
    namespace: str = Field("coe:route", description="Key prefix.")
    ttl_s: int = Field(3600, ge=1, description="Lifetime of a cached decision, in Redis and in the L1.")
    l1_max_entries: int = Field(10_000, ge=0, description="In-process LRU size per router replica (0: off).")
    timeout_ms: float = Field(30.0, gt=0, le=5000, description="Limit on every Redis call.")
    breaker: BreakerOptions = Field(default_factory=BreakerOptions)

    @field_validator("namespace")
    @classmethod
    def _check_namespace(cls, value: str) -> str:
        if not re.match(r"^[A-Za-z0-9:_.-]{1,64}$", value):
            raise ValueError("cache.namespace may use letters, digits and : _ . - only")
        return value

    @field_validator("url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not value.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("cache.url must start with redis://, rediss:// or unix://")
        return value

    def resolved_url(self) -> str:
        return os.environ.get(self.url_env) or self.url

    def password(self) -> str | None:
        return os.environ.get(self.password_env) if self.password_env else None


def redacted(url: str) -> str:
    """The URL with any password replaced, for logs and CLI output."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@")
    return urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment))
