"""What operators see of the running service: metrics from every replica, request ids, JSON logs.

The app here routes with two router replicas (``router.placement: deployment``) in front of a
remote expert that is the session's app, and writes its logs into a folder of its own.
"""

from __future__ import annotations

import copy
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

from deployments.http_api.request_ids import is_sane
from tests.conftest import config_from, default_config_dict
from tests.deployments.scrape import samples, total, wait_for

pytestmark = pytest.mark.serve

PREFIX = "/observed"
LOG_WAIT_S = 20.0


@pytest.fixture(scope="module")
def observed_app(base_url: str, router_store: Path, redis_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    from ray import serve

    from deployments.app import build_app_from_config

    folder = Path(tmp_path_factory.mktemp("observed"))
    router = copy.deepcopy(default_config_dict()["router"])
    router.update(store=str(router_store), placement="deployment", initial_scores={})
    router["deployment"] = {"num_cpus": 0.1, "max_ongoing_requests": 64, "autoscaling": {"min_replicas": 2, "max_replicas": 2}}
    # The session router's general expert, answered by the session's app over HTTP (the router
    # ranks only configured experts, so every decision names it).
    config = config_from({
        "experts": [{"name": "smollm2", "kind": "openai", "base_url": f"{base_url}/v1", "model": "smollm2", "cost": 0.135,
                     "api_key_env": "COE_TEST_REMOTE_KEY", "timeout_s": 60, "deployment": {"num_cpus": 0.05}}],
        "default_expert": "smollm2",
        "router": router,
        "cache": {"url": redis_server.url, "namespace": "observed:route"},
        "learner": {"enabled": False, "directory": str(folder / "learner"), "hmac_key_file": str(folder / "learner.key")},
        "logging": {"directory": str(folder / "logs")},
        "ingress": {"deployment": {"num_cpus": 0.1, "max_ongoing_requests": 64}},
        "app_name": "coe-observed",
    })
    serve.run(build_app_from_config(config), name=config.app_name, route_prefix=PREFIX)
    replicas = serve.status().applications[config.app_name].deployments["router"].replica_states
    assert replicas.get("RUNNING") == 2, f"the app runs two router replicas: {replicas}"
    try:
        with httpx.Client(base_url=f"{base_url}{PREFIX}", timeout=120) as client:
            yield {"client": client, "logs": folder / "logs"}
    finally:
        serve.delete(config.app_name)


def route_many(client: httpx.Client, count: int) -> None:
    """``count`` prompts never sent before, 8 at a time, so both router replicas get some."""
    def one(_: int) -> None:
        response = client.post("/v1/route", json={"messages": [{"role": "user", "content": f"Solve 3x + 7 = 40 for x, case {uuid.uuid4().hex}"}]})
        assert response.status_code == 200, response.text

    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(one, range(count)))


def router_decisions(client: httpx.Client) -> dict[str, float]:
    found = samples(client, "ray_coe_router_decisions_total")
    return {sample.labels["replica"]: total([s for s in found if s.labels["replica"] == sample.labels["replica"]])
            for sample in found if sample.labels.get("application") == "coe-observed"}


def test_both_router_replicas_export_their_counters_and_they_move(observed_app: dict[str, Any]) -> None:
    client = observed_app["client"]
    route_many(client, 24)
    first = wait_for(client, "ray_coe_router_decisions_total",
                     lambda found: len({s.labels["replica"] for s in found if s.labels.get("application") == "coe-observed"}) == 2)
    before = router_decisions(client)
    assert len(before) == 2 and all(value > 0 for value in before.values()), f"both replicas decided: {first}"
    route_many(client, 24)
    wait_for(client, "ray_coe_router_decisions_total", lambda found: sum(router_decisions(client).values()) >= sum(before.values()) + 24)
    after = router_decisions(client)
    assert set(after) == set(before) and sum(after.values()) - sum(before.values()) == 24, (
        "each decision is counted once, by the replica that made it"
    )
    assert any(after[replica] > before[replica] for replica in before)
    requests = samples(client, "ray_coe_requests_total")
    assert total(requests, endpoint="route_only", status="200") >= 48, "the ingress counts the requests it answered"


def test_a_sane_client_request_id_is_kept_and_an_insane_one_replaced(observed_app: dict[str, Any]) -> None:
    client = observed_app["client"]
    own = f"client-{uuid.uuid4()}"
    kept = client.get("/v1/models", headers={"x-request-id": own})
    assert kept.headers["x-request-id"] == own
    for insane in ("x" * 300, "spaces are not allowed", "quote\"d"):
        replaced = client.get("/v1/models", headers={"x-request-id": insane})
        assert replaced.status_code == 200 and replaced.headers["x-request-id"] != insane
        assert is_sane(replaced.headers["x-request-id"]), "the service's own id is sane"
    assert client.get("/v1/models").headers["x-request-id"] != client.get("/v1/models").headers["x-request-id"]


def log_lines(folder: Path) -> list[dict[str, Any]]:
    lines = []
    for path in sorted(folder.glob("*.log")):
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            if line.strip():
                lines.append({**json.loads(line), "_file": path.name})
    return lines


def test_one_request_id_runs_through_the_ingress_and_router_logs_without_the_prompt(observed_app: dict[str, Any]) -> None:
    client, folder = observed_app["client"], observed_app["logs"]
    marker = f"zebra{uuid.uuid4().hex[:12]}"
    request_id = f"trace-{uuid.uuid4().hex}"
    body = {"model": "auto", "max_tokens": 4, "messages": [{"role": "user", "content": f"Tell me about the {marker} please."}]}
    answer = client.post("/v1/chat/completions", json=body, headers={"x-request-id": request_id})
    assert answer.status_code == 200, answer.text
    assert answer.headers["x-request-id"] == request_id

    deadline = time.monotonic() + LOG_WAIT_S
    while True:
        lines = log_lines(folder)  # every line of every replica's file is JSON (json.loads above)
        mine = [line for line in lines if line.get("request_id") == request_id]
        finished = [line for line in mine if line.get("message") == "request finished"]
        decided = [line for line in mine if line.get("message") == "routing decision"]
        if finished and decided or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert finished and finished[0]["_file"].startswith("replica_coe-observed_ingress_"), [line["_file"] for line in mine]
    assert decided and decided[0]["_file"].startswith("replica_coe-observed_router_"), [line["_file"] for line in mine]
    summary = finished[0]
    assert summary["status"] == 200 and summary["endpoint"] == "chat_completions"
    assert summary["expert"] == decided[0]["expert"] and summary["category"] == decided[0]["category"]
    assert summary["completion_tokens"] >= 1 and summary["total_ms"] >= summary["ttft_ms"] >= summary["routing_ms"] > 0
    assert decided[0]["category"] in ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")
    assert not [line for line in lines if marker in json.dumps(line)], "no log line holds the prompt's text"
