"""`model: auto` through the real endpoint: the router deployment decides, versions hot-swap."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from services.router.artifact import HEAD_FILE, derive_router_artifact
from services.router.store import RouterStore
from services.auth.keys import service_headers

MATH = [{"role": "user", "content": "What is the derivative of x^3 + 2x with respect to x?"}]
CODING = [{"role": "user", "content": "Write a Python function that checks whether a string is a palindrome."}]


def test_route_dry_run_returns_the_decision(http: Any, trained_router: Any) -> None:
    response = http.post("/v1/route", json={"messages": MATH})
    assert response.status_code == 200
    decision = response.json()
    assert (decision["category"], decision["expert"], decision["policy"]) == ("math", "smollm2-math", "static")
    assert decision["router_version"] == trained_router.version
    assert response.headers["x-coe-router-version"] == trained_router.version
    assert response.headers["x-coe-category"] == "math"


def test_auto_chat_sends_math_and_coding_to_different_adapters(openai_client: Any, trained_router: Any) -> None:
    math = openai_client.chat.completions.with_raw_response.create(model="auto", messages=MATH, max_tokens=8, temperature=0)
    coding = openai_client.chat.completions.with_raw_response.create(model="auto", messages=CODING, max_tokens=8, temperature=0)
    assert math.headers["x-coe-expert"] == "smollm2-math" and math.headers["x-coe-policy"] == "static"
    assert coding.headers["x-coe-expert"] == "smollm2-code" and coding.headers["x-coe-category"] == "coding"
    assert float(math.headers["x-coe-route-confidence"]) > 0
    math_completion, coding_completion = math.parse(), coding.parse()
    assert math_completion.model == "smollm2-math" and coding_completion.model == "smollm2-code"
    assert math_completion.choices[0].message.content.startswith("Step 1:")
    assert coding_completion.choices[0].message.content.startswith("```python")
    assert math_completion.model_extra["route"]["router_version"] == trained_router.version


@pytest.mark.parametrize("text", ["Can you help me with this?", "ok thanks"])
def test_a_vague_request_or_chit_chat_is_out_of_distribution_and_falls_back(http: Any, text: str) -> None:
    response = http.post("/v1/chat/completions", json={"model": "auto", "messages": [{"role": "user", "content": text}], "max_tokens": 2})
    route = response.json()["route"]
    assert route["uncertain"] and route["expert"] == "smollm2" and route["reason"] == "out_of_distribution"
    assert isinstance(route["ood_score"], float)  # sent to the client, to see how far out it was
    assert response.headers["x-coe-expert"] == "smollm2" and response.headers["x-coe-policy"] == "static"


def test_per_request_knobs_trigger_the_fallback(http: Any) -> None:
    body = {"model": "auto", "messages": MATH, "max_tokens": 2, "coe": {"confidence_threshold": 0.999}}
    response = http.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    route = response.json()["route"]
    assert route["uncertain"] and route["expert"] == "smollm2" and "τ=0.999" in route["reason"]
    assert response.json()["model"] == "smollm2"


@pytest.mark.parametrize(
    ("body", "fragment"),
    [
        ({"model": "auto", "messages": [{"role": "user", "content": "  \n "}]}, "nothing to route on"),
        ({"messages": [{"role": "user", "content": "hi"}], "coe": {"cost_weight": -1}}, "coe.cost_weight"),
        ({"messages": [{"role": "user", "content": "hi"}], "coe": {"temperature": 1}}, "coe.temperature"),
    ],
)
def test_bad_routing_input_gets_400(http: Any, body: dict, fragment: str) -> None:
    path = "/v1/chat/completions" if "model" in body else "/v1/route"
    response = http.post(path, json=body)
    assert response.status_code == 400, response.text
    assert fragment in response.json()["error"]["message"]


def test_long_input_is_routed_and_marked_truncated(http: Any) -> None:
    text = "Summarise the key dates in this report. " + "The board met and approved the budget. " * 300
    decision = http.post("/v1/route", json={"messages": [{"role": "user", "content": text}]}).json()
    assert decision["truncated"] is True and decision["category"]


def route_many(base_url: str, count: int) -> list[dict[str, Any]]:
    with httpx.Client(base_url=base_url, headers=service_headers(), timeout=60) as client:
        with ThreadPoolExecutor(max_workers=8) as pool:
            responses = list(pool.map(lambda _: client.post("/v1/route", json={"messages": MATH}), range(count)))
    assert all(response.status_code == 200 for response in responses)
    return [response.json() for response in responses]


def test_hot_swap_and_roll_back_under_concurrent_requests(base_url: str, http: Any, trained_router: Any) -> None:
    store = RouterStore(trained_router.folder.parent)
    original = store.load_current()
    # A second version that sends math to the base model instead of the math adapter.
    scores = {category: dict(row) for category, row in original.manifest.scores.items()}
    scores["math"]["smollm2"] = 0.95
    changed = derive_router_artifact(store.root, original, scores=scores, parent=original.version)
    expected = {original.version: "smollm2-math", changed.version: "smollm2"}

    def swap_to(version: str) -> list[dict[str, Any]]:
        with ThreadPoolExecutor(max_workers=2) as pool:
            during = pool.submit(route_many, base_url, 48)
            store.use(version)
            reload = http.post("/admin/router/reload").json()
            decisions = during.result()
        assert reload["version"] == version
        return decisions

    try:
        during = swap_to(changed.version)
        after = route_many(base_url, 4)
        assert {decision["router_version"] for decision in after} == {changed.version}
        during += swap_to(original.version)  # roll back
        after = route_many(base_url, 4)
        assert {decision["router_version"] for decision in after} == {original.version}
        # Every decision, including those in flight across a swap, is whole: its version's table chose it.
        for decision in during + after:
            assert decision["expert"] == expected[decision["router_version"]]
    finally:
        store.use(original.version)
        http.post("/admin/router/reload")


def test_a_corrupt_new_version_is_refused_and_the_old_one_keeps_serving(http: Any, trained_router: Any) -> None:
    store = RouterStore(trained_router.folder.parent)
    original = store.load_current()
    broken = derive_router_artifact(store.root, original, temperature=original.manifest.temperature * 2)
    (broken.folder / HEAD_FILE).write_bytes(b"not safetensors")
    store.pointer.write_text(broken.version + "\n")  # as if a copy went wrong after the pointer moved
    try:
        reload = http.post("/admin/router/reload").json()
        assert reload["version"] == original.version and "corrupt" in reload["error"]
        decision = http.post("/v1/route", json={"messages": MATH}).json()
        assert decision["router_version"] == original.version
    finally:
        store.use(original.version)
        http.post("/admin/router/reload")


def test_readyz_includes_the_router(http: Any) -> None:
    deployments = http.get("/readyz").json()["deployments"]
    assert deployments["router"]["version"]
