"""The route cache through the real service: levels, versions, Redis failures, bad values, tools."""

from __future__ import annotations

import asyncio
import copy
import subprocess
import sys
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from services.router.artifact import derive_router_artifact
from services.router.store import RouterStore
from services.auth.keys import service_headers
from tests.deployments.scrape import samples, total, wait_for

COE = str(Path(sys.executable).parent / "coe")


def unique_math() -> str:
    return f"Compute the integral of x^2 from 0 to {uuid.uuid4().int % 10**12 + 3}."


def route(http: Any, text: str, **extra: Any) -> dict[str, Any]:
    response = http.post("/v1/route", json={"messages": [{"role": "user", "content": text}], **extra})
    assert response.status_code == 200, response.text
    return response.json()


def settle(http: Any) -> dict[str, Any]:
    """The router's cache counters, once its background writes to Redis have finished."""
    return http.get("/admin/cache/stats").json()


def test_miss_then_l1_then_redis_through_route_and_chat(http: Any) -> None:
    text = unique_math()
    first = route(http, text)
    assert first["cache"] == "miss" and first["expert"] == "smollm2-math"
    assert route(http, text)["cache"] == "l1"
    assert route(http, f"  {text.replace(' ', '   ')}\n")["cache"] == "l1"  # whitespace variants hit
    assert route(http, text, coe={"cost_weight": 0.5})["cache"] == "miss"  # other knobs, other entry
    settle(http)
    assert http.post("/admin/cache/flush", json={"levels": ["l1"]}).json()["l1_removed"] >= 2
    redis_hit = route(http, text)
    assert redis_hit["cache"] == "redis"
    assert {key: value for key, value in redis_hit.items() if key != "cache"} == {key: value for key, value in first.items() if key != "cache"}
    chat = http.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 1})
    assert chat.status_code == 200 and chat.json()["route"]["cache"] == "l1"


def router_counts(http: Any) -> dict[str, Any]:
    """The router replica's decision and batch counters (``GET /admin/status``)."""
    return http.get("/admin/status").json()["router"]


def test_hits_are_answered_by_the_ingress_with_the_routers_own_decision(http: Any, static_router: Any) -> None:
    text = unique_math()
    first = route(http, text)
    before = router_counts(http)
    hits = [route(http, text) for _ in range(3)]
    settle(http)
    http.post("/admin/cache/flush", json={"levels": ["l1"]})
    hits.append(route(http, text))
    assert [hit["cache"] for hit in hits] == ["l1", "l1", "l1", "redis"]
    assert router_counts(http)["decisions"] == before["decisions"], "no hit reached the router deployment"
    [own] = static_router.decide([static_router.prepare([{"role": "user", "content": text}])])
    compared = ("expert", "category", "router_version", "uncertain", "ood_score")
    for hit in [first, *hits]:
        assert {key: hit[key] for key in compared} == {key: own.model_dump(mode="json")[key] for key in compared}
        assert hit["probabilities"] == pytest.approx(own.probabilities, abs=1e-4)


def test_concurrent_misses_are_decided_in_batches(base_url: str, http: Any) -> None:
    """A burst of distinct prompts shares embedding passes: the router records batches, not one pass each."""
    before = router_counts(http)
    texts = [unique_math() for _ in range(64)]

    async def burst() -> list[int]:
        async with httpx.AsyncClient(base_url=base_url, headers=service_headers(), timeout=60, limits=httpx.Limits(max_connections=64)) as client:
            replies = await asyncio.gather(*(client.post("/v1/route", json={"messages": [{"role": "user", "content": text}]}) for text in texts))
        return [reply.status_code for reply in replies]

    assert asyncio.run(burst()) == [200] * len(texts)
    after = router_counts(http)
    decisions, batches = after["decisions"] - before["decisions"], after["batches"] - before["batches"]
    assert decisions == len(texts), "every prompt was new, so each was decided once"
    assert decisions / batches > 4, f"{decisions} decisions in {batches} embedding passes"


def test_a_hot_swap_never_serves_the_old_versions_decisions(http: Any, trained_router: Any) -> None:
    store = RouterStore(trained_router.folder.parent)
    original = store.load_current()
    scores = {category: dict(row) for category, row in original.manifest.scores.items()}
    scores["math"]["smollm2"] = 0.99
    changed = derive_router_artifact(store.root, original, scores=scores)
    text = unique_math()
    assert route(http, text)["cache"] == "miss"
    try:
        store.use(changed.version)
        assert http.post("/admin/router/reload").json()["version"] == changed.version
        after = route(http, text)
        assert (after["cache"], after["router_version"], after["expert"]) == ("miss", changed.version, "smollm2")
        assert route(http, text)["cache"] == "l1"
    finally:
        store.use(original.version)
        http.post("/admin/router/reload")
    back = route(http, text)  # the old version's entry is valid again for the old version
    assert (back["router_version"], back["expert"]) == (original.version, "smollm2-math") and back["cache"] in ("l1", "redis")


def test_redis_down_and_back_never_fails_a_request(base_url: str, http: Any, redis_server: Any) -> None:
    assert settle(http)["breaker"] == "closed"
    redis_server.stop()
    try:
        with httpx.Client(base_url=base_url, headers=service_headers(), timeout=30) as client:
            with ThreadPoolExecutor(max_workers=8) as pool:
                responses = list(pool.map(lambda _: client.post("/v1/route", json={"messages": [{"role": "user", "content": unique_math()}]}), range(24)))
        assert [response.status_code for response in responses] == [200] * 24
        assert {response.json()["cache"] for response in responses} == {"miss"}
        assert settle(http)["breaker"] in ("open", "half_open")
    finally:
        redis_server.start()
    deadline = time.monotonic() + 15
    while settle(http)["breaker"] != "closed":  # the breaker probes again after open_s and closes
        assert time.monotonic() < deadline, "the cache did not reconnect to Redis"
        route(http, unique_math())
        time.sleep(0.3)
    text = unique_math()
    route(http, text)
    settle(http)
    http.post("/admin/cache/flush", json={"levels": ["l1"]})
    assert route(http, text)["cache"] == "redis"


def test_a_corrupt_value_in_redis_is_ignored_and_replaced(http: Any, redis_server: Any, trained_router: Any) -> None:
    client = redis_server.client()
    text = unique_math()
    before = set(client.scan_iter(match=f"coe:route:{trained_router.version}:*"))
    route(http, text)
    settle(http)
    (key,) = set(client.scan_iter(match=f"coe:route:{trained_router.version}:*")) - before
    client.set(key, b"\x89PNG not a decision")
    http.post("/admin/cache/flush", json={"levels": ["l1"]})
    corrupt_before = settle(http)["corrupt_values"]
    again = route(http, text)
    assert again["cache"] == "miss" and again["expert"] == "smollm2-math"
    assert settle(http)["corrupt_values"] == corrupt_before + 1
    assert client.get(key).startswith(b"{")  # rewritten with a good decision


def test_metrics_expose_cache_hits_routing_time_and_breaker(http: Any) -> None:
    text = unique_math()
    hits_before = total(samples(http, "ray_coe_route_cache_lookups_total"), level="l1", result="hit")
    route(http, text)
    route(http, text)  # the second is answered by this replica's L1
    wait_for(http, "ray_coe_route_cache_lookups_total",
             lambda found: total(found, level="l1", result="hit") >= hits_before + 1)
    assert total(samples(http, "ray_coe_routing_seconds_count"), source="miss") >= 1, "computed decisions are timed"
    breaker = samples(http, "ray_coe_route_cache_breaker_state")
    assert breaker and all(sample.labels["deployment"] == "ingress" for sample in breaker), "tagged with the deployment"


def test_flush_endpoint_validates_its_body(http: Any) -> None:
    response = http.post("/admin/cache/flush", json={"version": "../../etc"})
    assert response.status_code == 400 and response.json()["error"]["param"] == "version"
    assert http.post("/admin/cache/flush", json={"levels": ["disk"]}).status_code == 400


def test_cli_stats_and_flush_by_version(http: Any, redis_server: Any, trained_router: Any, tmp_config_file) -> None:
    from tests.conftest import default_config_dict

    route(http, unique_math())
    settle(http)
    raw = copy.deepcopy(default_config_dict())
    raw["cache"]["url"] = redis_server.url
    config = str(tmp_config_file(raw))
    stats = subprocess.run([COE, "cache", "--config", config, "stats"], capture_output=True, text=True, timeout=60)
    assert stats.returncode == 0 and f'"{trained_router.version}":' in stats.stdout and '"maxmemory_policy"' in stats.stdout
    flushed = subprocess.run(
        [COE, "cache", "--config", config, "flush", "--version", trained_router.version], capture_output=True, text=True, timeout=60
    )
    assert flushed.returncode == 0 and "removed" in flushed.stdout
    assert not list(redis_server.client().scan_iter(match=f"coe:route:{trained_router.version}:*"))
