"""``POST /v1/feedback`` through the real service and a real Redis, and ``coe feedback export``."""

from __future__ import annotations

import copy
import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from deployments.fault_drill import wait_for_learner
from services.api.schemas import new_completion_id
from services.config import AppConfig
from services.learner.events import EVENT_FIELD, CompletionRecord, FeedbackEvent
from services.auth.keys import service_headers

COE = str(Path(sys.executable).parent / "coe")
MATH = [{"role": "user", "content": "What is the derivative of x^3 + 2x with respect to x?"}]
CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def record_key(config: AppConfig, completion_id: str) -> str:
    return f"{config.learner.feedback.record_prefix}:{completion_id}"


def remembered(redis: Any, config: AppConfig, completion_id: str) -> CompletionRecord:
    """The completion's record, once the ingress's background write has landed."""
    deadline = time.monotonic() + 10
    while (raw := redis.get(record_key(config, completion_id))) is None:
        assert time.monotonic() < deadline, f"completion {completion_id} was never remembered"
        time.sleep(0.05)
    ttl = redis.ttl(record_key(config, completion_id))
    assert 0 < ttl <= config.learner.feedback.record_ttl_s
    return CompletionRecord.model_validate_json(raw)


def events_for(redis: Any, config: AppConfig, completion_id: str) -> list[tuple[str, FeedbackEvent]]:
    entries = redis.xrange(config.learner.feedback.stream)
    events = [(stream_id.decode(), FeedbackEvent.model_validate_json(fields[EVENT_FIELD.encode()])) for stream_id, fields in entries]
    return [(stream_id, event) for stream_id, event in events if event.completion_id == completion_id]


def chat(http: Any, model: str, messages: list[dict[str, str]]) -> dict[str, Any]:
    response = http.post("/v1/chat/completions", json={"model": model, "messages": messages, "max_tokens": 2, "temperature": 0})
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_on_a_routed_completion_is_streamed_once_with_its_features(
    http: Any, redis_server: Any, app_config: AppConfig
) -> None:
    redis = redis_server.client()
    completion = chat(http, "auto", MATH)
    assert completion["model"] == "smollm2-math" and completion["route"]["policy"] == "static"
    assert "features" not in completion["route"]  # the learner's input never reaches clients
    record = remembered(redis, app_config, completion["id"])
    assert (record.requested_model, record.expert) == ("auto", "smollm2-math")

    response = http.post("/v1/feedback", json={"id": completion["id"], "rating": 1})
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["object"] == "feedback" and receipt["id"] == completion["id"]
    assert (receipt["accepted"], receipt["duplicate"]) == (True, False) and receipt["stream_id"]

    ((stream_id, event),) = events_for(redis, app_config, completion["id"])
    assert stream_id == receipt["stream_id"]
    assert (event.rating, event.label(), event.has_comment) == (1, "positive", False)
    assert event.record.expert == "smollm2-math" and event.record.decision.category == "math"
    features = event.record.decision.features
    assert features is not None
    assert len(features) == app_config.learner.projection_dim + len(completion["route"]["probabilities"])

    again = http.post("/v1/feedback", json={"id": completion["id"], "rating": -1})
    assert again.status_code == 200, again.text
    assert again.json() == {**receipt, "accepted": False, "duplicate": True}  # same entry; the -1 is not taken
    assert len(events_for(redis, app_config, completion["id"])) == 1


def test_a_streamed_explicit_completion_takes_a_score_and_a_preferred_expert(
    openai_client: Any, http: Any, redis_server: Any, app_config: AppConfig
) -> None:
    redis = redis_server.client()
    chunks = list(openai_client.chat.completions.create(model="smollm2", messages=CAPITAL, max_tokens=2, temperature=0, stream=True))
    completion_id = chunks[0].id
    record = remembered(redis, app_config, completion_id)
    assert (record.requested_model, record.expert, record.decision.policy) == ("smollm2", "smollm2", "explicit")

    body = {"id": completion_id, "score": 0.25, "preferred_expert": "smollm2:math"}  # the alias names smollm2-math
    response = http.post("/v1/feedback", json=body)
    assert response.status_code == 200 and response.json()["accepted"], response.text
    ((_, event),) = events_for(redis, app_config, completion_id)
    assert (event.score, event.rating, event.label()) == (0.25, None, "negative")
    assert event.preferred_expert == "smollm2-math"
    assert event.record.decision.features is None  # not routed: nothing for the learner's router to learn from


def test_feedback_for_an_unknown_completion_is_404(http: Any, app_config: AppConfig) -> None:
    unknown = new_completion_id()
    response = http.post("/v1/feedback", json={"id": unknown, "rating": 0})
    assert response.status_code == 404
    error = response.json()["error"]
    assert unknown in error["message"] and f"({app_config.learner.feedback.record_ttl_s} s)" in error["message"]
    assert (error["type"], error["code"], error["param"]) == ("invalid_request_error", "completion_not_found", "id")


@pytest.mark.parametrize(
    ("body", "param", "message"),
    [
        (b"{not json", None, "could not parse the JSON body"),
        (b"[1]", None, "must be a JSON object"),
        ({"rating": 2}, "rating", "expected -1, 0 or 1"),
        ({"rating": True}, "rating", "booleans are not accepted"),
        ({"rating": "1"}, "rating", "expected -1, 0 or 1"),
        ({"rating": 1, "score": 0.5}, "rating", "exactly one of 'rating'.*both"),
        ({}, "rating", "exactly one of 'rating'.*neither"),
        ({"score": 1.5}, "score", "less than or equal to 1"),
        ({"score": True}, "score", "booleans are not accepted"),
        ({"rating": 1, "preferred_expert": "gpt-5"}, "preferred_expert", r"'gpt-5' is not a configured expert; expected one of \['smollm2'"),
        ({"rating": 1, "comment": "x" * 4001}, "comment", "at most 4000 characters"),
        ({"rating": 1, "comment": 7}, "comment", "valid string"),
        ({"rating": 1, "sentiment": "good"}, "sentiment", "Unrecognized request argument supplied: sentiment"),
        ({"id": "chatcmpl-../../etc", "rating": 1}, "id", "is not a chat completion id"),
        ({"id": None, "rating": 1}, "id", "valid string"),
    ],
)
def test_malformed_feedback_is_400_naming_the_field(http: Any, body: Any, param: str | None, message: str) -> None:
    if isinstance(body, dict):
        body = json.dumps({"id": new_completion_id(), **body}).encode()
    response = http.post("/v1/feedback", content=body, headers={"content-type": "application/json"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["param"] == param and error["type"] == "invalid_request_error"
    assert re.search(message, error["message"]), error["message"]


def test_a_comment_is_kept_under_its_own_key_for_the_retention_time(
    http: Any, redis_server: Any, app_config: AppConfig
) -> None:
    redis = redis_server.client()
    completion = chat(http, "smollm2", CAPITAL)
    remembered(redis, app_config, completion["id"])
    comment = "Right answer, but too short — é ✓"
    response = http.post("/v1/feedback", json={"id": completion["id"], "rating": 0, "comment": comment})
    assert response.status_code == 200 and response.json()["accepted"], response.text
    ((stream_id, event),) = events_for(redis, app_config, completion["id"])
    assert event.has_comment
    raw_entry = redis.xrange(app_config.learner.feedback.stream, min=stream_id, max=stream_id)[0][1][EVENT_FIELD.encode()]
    assert comment.encode() not in raw_entry and "too short" not in raw_entry.decode()
    (key,) = [key for key in redis.scan_iter(match=f"{app_config.learner.feedback.record_prefix}:*") if b"comment" in key and completion["id"].encode() in key]
    assert redis.get(key).decode() == comment
    assert 0 < redis.ttl(key) <= app_config.learner.feedback.comment_retention_s


def test_export_writes_jsonl_joined_with_the_route(
    http: Any, redis_server: Any, app_config: AppConfig, tmp_config_file: Any, tmp_path: Path
) -> None:
    from tests.conftest import default_config_dict

    redis = redis_server.client()
    completion = chat(http, "auto", MATH)
    remembered(redis, app_config, completion["id"])
    body = {"id": completion["id"], "rating": -1, "comment": "wrong adapter", "preferred_expert": "smollm2-code"}
    assert http.post("/v1/feedback", json=body).status_code == 200

    raw = copy.deepcopy(default_config_dict())
    raw["cache"]["url"] = redis_server.url
    out = tmp_path / "exports" / "feedback.jsonl"
    result = subprocess.run(
        [COE, "feedback", "export", "--out", str(out), "--config", str(tmp_config_file(raw))],
        capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert f"wrote {len(lines)} feedback entr" in result.stdout
    assert len(lines) == len(redis.xrange(app_config.learner.feedback.stream))
    assert [line["stream_id"] for line in lines] == sorted(line["stream_id"] for line in lines)  # oldest first
    (line,) = [line for line in lines if line["completion_id"] == completion["id"]]
    assert (line["rating"], line["score"], line["label"], line["comment"]) == (-1, None, "negative", "wrong adapter")
    assert (line["expert"], line["requested_model"], line["preferred_expert"]) == ("smollm2-math", "auto", "smollm2-code")
    route = completion["route"]
    assert {key: line["route"][key] for key in ("expert", "policy", "category", "router_version")} == {
        key: route[key] for key in ("expert", "policy", "category", "router_version")
    }
    assert "features" not in line["route"] and len(line["features"]) > app_config.learner.projection_dim
    assert not [path for path in out.parent.iterdir() if path != out]  # no temporary file left behind


def test_a_shadow_sample_keeps_the_learners_features(redis_server: Any, app_config: AppConfig) -> None:
    """The ingress samples none in tests (sample_rate 0), so write one through the same store."""
    import asyncio

    from services.learner.events import ShadowRequest
    from services.learner.feedback_store import FeedbackStore
    from services.router.decision import RouteDecision

    decision = RouteDecision(expert="smollm2-math", policy="static", category="math", features=(0.5, -0.25, 1.0))
    record = CompletionRecord(id=new_completion_id(), created=1, requested_model="auto", expert="smollm2-math", decision=decision)
    sample = ShadowRequest(completion_id=record.id, messages=[{"role": "user", "content": "2+2?"}], record=record)
    asyncio.run(FeedbackStore(app_config).enqueue_shadow(sample))
    entries = redis_server.client().xrange(app_config.learner.shadow.stream)
    (read,) = [ShadowRequest.model_validate_json(fields[EVENT_FIELD.encode()]) for _, fields in entries
               if record.id.encode() in fields[EVENT_FIELD.encode()]]
    assert read == sample and read.record.decision.features == (0.5, -0.25, 1.0)


def test_a_redis_restart_loses_no_acknowledged_feedback_and_routing_goes_on(
    base_url: str, http: Any, redis_server: Any, app_config: AppConfig
) -> None:
    """Redis runs with an append-only file fsynced on every write; it is stopped and restarted
    under traffic."""
    redis = redis_server.client()
    stream = app_config.learner.feedback.stream
    before = wait_for_learner(base_url, redis, stream)["counts"].get("feedback_positive", 0)
    completions = [chat(http, "auto", [{"role": "user", "content": f"What is {n} times 7?"}]) for n in range(3, 7)]
    for completion in completions:
        remembered(redis, app_config, completion["id"])
    for completion in completions[:2]:
        assert http.post("/v1/feedback", json={"id": completion["id"], "rating": 1}).status_code == 200

    redis_server.stop()
    try:
        with httpx.Client(base_url=base_url, headers=service_headers(), timeout=60) as client:
            response = client.post("/v1/feedback", json={"id": completions[2]["id"], "rating": 1})
            assert response.status_code == 503, response.text
            assert int(response.headers["Retry-After"]) >= 1
            error = response.json()["error"]
            assert "Redis" in error["message"] and error["type"] == "service_unavailable"
            # Routing and answers go on without Redis (the route cache falls back to its own level).
            routed = client.post("/v1/route", json={"messages": [{"role": "user", "content": f"Integrate x^{time.time_ns()}"}]})
            assert routed.status_code == 200 and routed.json()["category"] == "math"
            assert chat(client, "auto", CAPITAL)["choices"][0]["finish_reason"] in ("stop", "length")
    finally:
        redis_server.start()

    # The records, the stream and the consumer group came back from the append-only file.
    deadline = time.monotonic() + 30
    for completion in completions[2:]:
        while (response := http.post("/v1/feedback", json={"id": completion["id"], "rating": 1})).status_code != 200:
            assert time.monotonic() < deadline, f"feedback did not recover after Redis restarted: {response.text}"
            time.sleep(0.5)
        assert response.json()["accepted"]
    status = wait_for_learner(base_url, redis_server.client(), stream)
    assert status["counts"]["feedback_positive"] - before == 4, "each acknowledged feedback was applied exactly once"
    pending = redis_server.client().xpending(app_config.learner.feedback.stream, app_config.learner.consumer_group)
    assert pending["pending"] == 0
    while http.get("/admin/cache/stats").json()["breaker"] != "closed":  # leave the route cache healthy too
        assert time.monotonic() < deadline + 30, "the route cache did not reconnect to Redis"
        http.post("/v1/route", json={"messages": [{"role": "user", "content": f"Integrate x^{time.time_ns()}"}]})
        time.sleep(0.3)
