"""The route cache against real Redis servers: TTL, corrupt values, no Redis at all."""

from __future__ import annotations

import asyncio
import uuid

import pytest

from services.breaker import BreakerState
from services.cache.config import CacheConfig
from services.cache.route_cache import RouteCache, ServingVersion, cache_key
from services.router.decision import RankedExpert, RouteDecision
from tests.conftest import free_port

VERSION = "0123456789abcdef"


def decision(expert: str = "smollm2-math") -> RouteDecision:
    return RouteDecision(
        expert=expert, policy="static", category="math", probabilities={"math": 0.9, "coding": 0.1},
        confidence=0.9, ranked=(RankedExpert(expert=expert, score=0.8),), router_version=VERSION,
    )


def new_cache(url: str, **settings) -> RouteCache:
    return RouteCache(CacheConfig(url=url, namespace=f"coe:test:{uuid.uuid4().hex[:8]}", **settings))


def key(cache: RouteCache, text: str) -> str:
    return cache_key(cache.config.namespace, ServingVersion(VERSION), text, (0.0, 0.5, []))


def test_keys_ignore_whitespace_and_separate_versions_and_knobs() -> None:
    assert cache_key("ns", ServingVersion(VERSION), "solve  x\\n+1", ()) == cache_key("ns", ServingVersion(VERSION), " solve x\\n+1 ", ())
    base = cache_key("ns", ServingVersion(VERSION), "solve x", (0.0,))
    assert base.startswith(f"ns:{VERSION}:0:")
    assert base != cache_key("ns", ServingVersion("fedcba9876543210"), "solve x", (0.0,))
    assert base != cache_key("ns", ServingVersion(VERSION, policy_revision=1), "solve x", (0.0,))
    assert base != cache_key("ns", ServingVersion(VERSION), "solve x", (0.3,))


def test_redis_level_serves_after_l1_is_cleared_and_values_expire(redis_server) -> None:
    async def scenario() -> None:
        cache = new_cache(redis_server.url, ttl_s=1)
        assert cache.check_redis_at_start()
        assert await cache.get(key(cache, "q"), VERSION) == (None, None)
        cache.put(key(cache, "q"), decision())
        await cache.drain()
        assert (await cache.get(key(cache, "q"), VERSION))[1] == "l1"
        assert redis_server.client().ttl(key(cache, "q")) in (0, 1)
        cache.clear_l1()
        found, source = await cache.get(key(cache, "q"), VERSION)
        assert source == "redis" and found.expert == "smollm2-math"
        await asyncio.sleep(1.3)
        assert await cache.get(key(cache, "q"), VERSION) == (None, None)  # gone from both levels

    asyncio.run(scenario())


@pytest.mark.parametrize(
    "stored",
    [b"\x00\xffnot json", b'{"hello": "world"}', b"[1, 2, 3]", decision().model_copy(update={"router_version": "ffffffffffffffff"}).model_dump_json().encode()],
)
def test_corrupt_or_foreign_values_are_ignored(redis_server, stored: bytes) -> None:
    async def scenario() -> None:
        cache = new_cache(redis_server.url)
        redis_server.client().set(key(cache, "q"), stored)
        assert await cache.get(key(cache, "q"), VERSION) == (None, None)
        assert cache.stats()["corrupt_values"] == 1

    asyncio.run(scenario())


def test_without_redis_the_cache_runs_on_its_l1_and_fails_fast() -> None:
    async def scenario() -> None:
        cache = new_cache(f"redis://127.0.0.1:{free_port()}/0", timeout_ms=50)
        assert not cache.check_redis_at_start()
        assert cache.breaker_state == BreakerState.OPEN
        loop = asyncio.get_running_loop()
        started = loop.time()
        assert await cache.get(key(cache, "q"), VERSION) == (None, None)
        assert loop.time() - started < 0.05  # skipped, not waited for
        cache.put(key(cache, "q"), decision())
        await cache.drain()
        assert (await cache.get(key(cache, "q"), VERSION))[1] == "l1"

    asyncio.run(scenario())


def test_password_from_the_environment(tmp_path, monkeypatch) -> None:
    import subprocess
    import time

    import redis

    port = free_port()
    server = subprocess.Popen(
        ["redis-server", "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--requirepass", "s3cret", "--dir", str(tmp_path)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                redis.Redis(port=port, password="s3cret").ping()
                break
            except redis.ConnectionError:
                time.sleep(0.05)
        url = f"redis://127.0.0.1:{port}/0"
        assert not new_cache(url, timeout_ms=200).check_redis_at_start()  # no password: refused
        monkeypatch.setenv("COE_TEST_REDIS_PASSWORD", "s3cret")
        cache = new_cache(url, timeout_ms=200, password_env="COE_TEST_REDIS_PASSWORD")
        assert cache.check_redis_at_start()

        async def scenario() -> None:
            cache.put(key(cache, "q"), decision())
            await cache.drain()
            cache.clear_l1()
            assert (await cache.get(key(cache, "q"), VERSION))[1] == "redis"

        asyncio.run(scenario())
        assert "s3cret" not in cache.stats()["redis_url"]
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_redis_url_from_the_environment_wins_and_passwords_are_redacted(monkeypatch) -> None:
    from services.cache.config import redacted

    monkeypatch.setenv("COE_REDIS_URL", "rediss://:pw@cache.internal:6380/2")
    config = CacheConfig()
    assert config.resolved_url() == "rediss://:pw@cache.internal:6380/2"
    assert redacted(config.resolved_url()) == "rediss://:***@cache.internal:6380/2"


def test_a_cancelled_probe_does_not_leave_the_breaker_half_open(tmp_path) -> None:
    """A client that disconnects cancels the router call, and with it the half-open probe to Redis.
    Redis is frozen (SIGSTOP) so that the probe is in flight when it is cancelled."""
    from deployments.local_redis import RedisServer

    server = RedisServer(free_port(), tmp_path)
    server.start()
    try:
        async def scenario() -> None:
            cache = new_cache(server.url, timeout_ms=2000, breaker={"failure_threshold": 1, "open_s": 0.2})
            server.client().set(key(cache, "q"), decision().model_dump_json())
            cache._breaker.trip()
            await asyncio.sleep(0.25)  # open time over: the next lookup is the probe
            server.pause()
            try:
                probe = asyncio.create_task(cache.get(key(cache, "q"), VERSION))
                await asyncio.sleep(0.2)
                probe.cancel()
                with pytest.raises(asyncio.CancelledError):
                    await probe
            finally:
                server.resume()
            found, source = await cache.get(key(cache, "q"), VERSION)
            assert source == "redis" and found.expert == "smollm2-math", "after a cancelled probe, Redis is used again"
            assert cache.breaker_state == BreakerState.CLOSED

        asyncio.run(scenario())
    finally:
        server.stop()

