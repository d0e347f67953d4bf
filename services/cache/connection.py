"""Redis clients built from the cache config: short timeouts, no client-side retries.

The cache decides what to do when Redis fails (skip it, trip the breaker), so the client must
fail fast instead of retrying behind our back.
"""

from __future__ import annotations

from typing import Any

from services.cache.config import CacheConfig


def _options(config: CacheConfig) -> dict[str, Any]:
    from redis.backoff import NoBackoff
    from redis.retry import Retry

    timeout = config.timeout_ms / 1000.0
    options: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),
        "health_check_interval": 0,
    }
    password = config.password()
    if password:
        options["password"] = password
    if config.tls_ca_file and config.resolved_url().startswith("rediss://"):
        options["ssl_ca_certs"] = config.tls_ca_file
    return options


def async_client(config: CacheConfig, timeout_s: float | None = None) -> Any:
    """``timeout_s`` replaces ``cache.timeout_ms`` for callers whose calls may take longer than a lookup."""
    from redis.asyncio import Redis

    options = _options(config)
    if timeout_s is not None:
        options["socket_timeout"] = options["socket_connect_timeout"] = timeout_s
    return Redis.from_url(config.resolved_url(), **options)


def sync_client(config: CacheConfig, timeout_s: float | None = None) -> Any:
    """For admin work (flush, stats) that may take longer than a lookup."""
    from redis import Redis

    options = _options(config)
    if timeout_s is not None:
        options["socket_timeout"] = options["socket_connect_timeout"] = timeout_s
    return Redis.from_url(config.resolved_url(), **options)
