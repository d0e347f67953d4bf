"""API keys, roles and per-key rate limits against the real service.

The session app runs with auth on. A second, small app (``auth_app``: two ingress replicas, a
Redis of its own, keys trusted for a few seconds, one remote expert that is the session app) shows
what needs several replicas or a Redis outage: a limit shared by the replicas, a revoked key
refused within the trust time, the limiter failing open and authentication failing closed.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from deployments.ingress import ROUTES
from deployments.local import free_port
from deployments.local_redis import RedisServer
from services.auth.keys import KeyStore
from services.cache.connection import sync_client
from services.config import AppConfig
from tests.conftest import config_from
from tests.deployments.scrape import total, wait_for

PUBLIC = {"/healthz", "/readyz"}
WRONG_KEY = "coe-this-is-not-a-key-of-this-service-0000000000"
AUTH_APP_TRUST_S = 4.0


def key_store(config: AppConfig) -> KeyStore:
    return KeyStore(config.auth.namespace, sync_client(config.cache, timeout_s=5.0))


def call(client: httpx.Client, method: str, path: str, key: str | None) -> httpx.Response:
    headers = {"Authorization": f"Bearer {key}"} if key is not None else {}
    if method == "POST":
        return client.post(path, json={}, headers=headers)
    return client.get(path, headers=headers)


@pytest.fixture(scope="module")
def anonymous(base_url: str) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=base_url, timeout=60) as client:
        yield client


def test_every_endpoint_but_the_probes_refuses_a_missing_wrong_or_revoked_key(anonymous: httpx.Client, app_config: AppConfig) -> None:
    store = key_store(app_config)
    name = f"revoked-{time.time_ns()}"
    revoked, _ = store.create(name)
    store.revoke(name)
    for method, path, _ in ROUTES:
        for key in (None, WRONG_KEY, revoked):
            response = call(anonymous, method, path, key)
            if path in PUBLIC:
                assert response.status_code != 401, f"{path} is a probe: it answers without a key"
                continue
            assert response.status_code == 401, f"{method} {path} with key {key and key[:8]!r}: {response.status_code}"
            error = response.json()["error"]
            assert error["code"] == "invalid_api_key" and error["type"] == "invalid_request_error"
            assert response.headers["www-authenticate"] == "Bearer"
            if key is not None:
                assert key not in response.text and key[8:24] not in response.text, "no part of the key is echoed"


def test_a_user_key_is_refused_on_admin_endpoints_and_served_elsewhere(anonymous: httpx.Client, app_config: AppConfig) -> None:
    user_key, _ = key_store(app_config).create(f"user-{time.time_ns()}")
    for method, path, _ in ROUTES:
        response = call(anonymous, method, path, user_key)
        if path.startswith("/admin/"):
            assert response.status_code == 403, f"{method} {path}: {response.status_code}"
            assert response.json()["error"]["code"] == "insufficient_permissions"
        else:
            # An empty body is a bad request (400), which shows the key itself was accepted.
            assert response.status_code in (200, 400), f"{method} {path}: {response.status_code} {response.text[:200]}"


def test_the_official_client_works_with_a_key_and_reports_a_wrong_one(base_url: str, app_config: AppConfig) -> None:
    import openai

    key, _ = key_store(app_config).create(f"client-{time.time_ns()}")
    client = openai.OpenAI(base_url=f"{base_url}/v1", api_key=key, max_retries=0, timeout=120)
    answer = client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "Say hi."}], max_tokens=2)
    assert answer.choices[0].message.content is not None
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=f"{base_url}/v1", api_key=WRONG_KEY, max_retries=0).models.list()


def test_feedback_on_another_keys_completion_is_404_as_if_unknown(base_url: str, app_config: AppConfig) -> None:
    import openai

    store = key_store(app_config)
    owner, _ = store.create(f"owner-{time.time_ns()}")
    other, _ = store.create(f"other-{time.time_ns()}")
    completion = openai.OpenAI(base_url=f"{base_url}/v1", api_key=owner, max_retries=0, timeout=120).chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Name a colour."}], max_tokens=2
    )
    with httpx.Client(base_url=base_url, timeout=60) as client:
        stolen = client.post("/v1/feedback", json={"id": completion.id, "rating": -1}, headers={"Authorization": f"Bearer {other}"})
        assert stolen.status_code == 404 and stolen.json()["error"]["code"] == "completion_not_found"
        own = client.post("/v1/feedback", json={"id": completion.id, "rating": 1}, headers={"Authorization": f"Bearer {owner}"})
        assert own.status_code == 200 and own.json()["accepted"] is True


def test_failed_attempts_are_counted_by_reason(anonymous: httpx.Client, http: Any) -> None:
    anonymous.get("/v1/models")
    anonymous.get("/v1/models", headers={"Authorization": f"Bearer {WRONG_KEY}"})
    failures = wait_for(http, "ray_coe_auth_failures_total",
                        lambda found: all(total(found, reason=reason) >= 1 for reason in ("missing", "invalid")))
    assert {sample.labels["deployment"] for sample in failures} == {"ingress"}


# ---------------------------------------------------------------------------------- two replicas
@pytest.fixture(scope="module")
def auth_app(base_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from deployments.app import build_app_from_config

    folder = Path(tmp_path_factory.mktemp("auth-app"))
    (folder / "redis").mkdir()
    redis = RedisServer(free_port(), folder / "redis", persistent=True)
    redis.start()
    config = config_from({
        "experts": [{"name": "remote", "kind": "openai", "base_url": f"{base_url}/v1", "model": "smollm2", "cost": 0.1,
                     "api_key_env": "COE_TEST_REMOTE_KEY", "timeout_s": 60}],
        "default_expert": "remote",
        "cache": {"url": redis.url},
        "learner": {"enabled": False, "directory": str(folder / "learner"), "hmac_key_file": str(folder / "learner.key")},
        "auth": {"enabled": True, "key_cache_ttl_s": AUTH_APP_TRUST_S},
        "ingress": {"deployment": {"num_cpus": 0.1, "max_ongoing_requests": 64,
                                   "autoscaling": {"min_replicas": 2, "max_replicas": 2}}},
        "app_name": "coe-auth",
    })
    serve.run(build_app_from_config(config), name=config.app_name, route_prefix="/auth")
    replicas = serve.status().applications[config.app_name].deployments["ingress"].replica_states
    assert replicas.get("RUNNING") == 2, f"the auth app runs two ingress replicas: {replicas}"
    try:
        yield {"url": f"{base_url}/auth", "config": config, "redis": redis, "store": key_store(config)}
    finally:
        serve.delete(config.app_name)
        redis.stop()


def burst(url: str, key: str, count: int, path: str = "/v1/models") -> list[httpx.Response]:
    with httpx.Client(base_url=url, timeout=60, headers={"Authorization": f"Bearer {key}"}, limits=httpx.Limits(max_connections=32)) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            return list(pool.map(lambda _: client.get(path), range(count)))


def test_a_requests_limit_holds_across_two_replicas_sharing_redis(auth_app: dict[str, Any]) -> None:
    key, _ = auth_app["store"].create("rpm-6", rpm=6)
    responses = burst(auth_app["url"], key, 18)
    statuses = [response.status_code for response in responses]
    # A bucket per replica would let up to 12 through; one shared bucket lets 6 (7 if it refilled meanwhile).
    assert statuses.count(200) in (6, 7) and set(statuses) == {200, 429}, statuses
    refused = next(response for response in responses if response.status_code == 429)
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.headers["x-ratelimit-limit-requests"] == "6"
    assert refused.headers["x-ratelimit-remaining-requests"] == "0"
    assert refused.headers["x-ratelimit-reset-requests"].endswith("s")
    assert refused.json()["error"]["type"] == "rate_limit_error" and "6 requests per minute" in refused.json()["error"]["message"]
    served = next(response for response in responses if response.status_code == 200)
    assert served.headers["x-ratelimit-limit-requests"] == "6", "an answer carries the key's limits too"


def test_tokens_are_charged_for_the_prompt_then_corrected_with_the_real_count(auth_app: dict[str, Any]) -> None:
    key, _ = auth_app["store"].create("tpm-30", tpm=30)
    body = {"model": "remote", "messages": [{"role": "user", "content": "Name three rivers of Europe, please."}], "max_tokens": 8}
    with httpx.Client(base_url=auth_app["url"], timeout=120, headers={"Authorization": f"Bearer {key}"}) as client:
        first = client.post("/v1/chat/completions", json=body)
        assert first.status_code == 200, first.text
        admitted = int(first.headers["x-ratelimit-remaining-tokens"])
        used = first.json()["usage"]["total_tokens"]
        assert 30 - admitted < used, "admission charged the prompt's estimate, less than the real count"
        time.sleep(0.3)  # the correction is written as the answer ends
        second = client.post("/v1/chat/completions", json=body)
    # After the correction the bucket is in debt (30 - used), so the next prompt waits.
    assert second.status_code == 429, f"{used} tokens were used of 30: {second.text}"
    assert second.headers["x-ratelimit-limit-tokens"] == "30"
    assert "tokens per minute" in second.json()["error"]["message"]


def test_a_revoked_key_stops_working_within_the_trust_time(auth_app: dict[str, Any]) -> None:
    key, record = auth_app["store"].create("soon-revoked")
    assert all(response.status_code == 200 for response in burst(auth_app["url"], key, 8)), "both replicas now trust the key"
    auth_app["store"].revoke(record.name)
    time.sleep(AUTH_APP_TRUST_S + 0.5)
    assert {response.status_code for response in burst(auth_app["url"], key, 8)} == {401}


def test_with_redis_stopped_known_keys_go_on_unlimited_and_unknown_keys_get_503(auth_app: dict[str, Any]) -> None:
    store, redis, url = auth_app["store"], auth_app["redis"], auth_app["url"]
    limited, _ = store.create("limited-8", rpm=8)
    never_used, _ = store.create("never-used")
    before = [response.status_code for response in burst(url, limited, 12)]
    assert 429 in before and before.count(200) >= 8, f"the limit was reached before Redis stopped ({before})"
    redis.stop()
    try:
        during = [response.status_code for response in burst(url, limited, 8)]
        assert set(during) <= {200, 503} and during.count(200) >= 1, (
            f"the limiter failed open: a spent key that a replica had checked was served ({during})"
        )
        unknown = burst(url, never_used, 4)
        assert {response.status_code for response in unknown} == {503}, "a key that cannot be checked is never let in"
        assert unknown[0].json()["error"]["code"] == "auth_unavailable"
    finally:
        redis.start()
    deadline = time.monotonic() + 30
    while burst(url, never_used, 1)[0].status_code != 200:  # Redis kept the keys across its restart
        assert time.monotonic() < deadline, "keys work again once Redis is back"
        time.sleep(0.5)
