"""Feedback end to end: the real endpoint, the Redis Stream, and the learner deployment."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import pytest

from services.config import AppConfig
from services.learner.checkpoint import load_snapshot
from services.learner.events import CompletionRecord, ShadowRequest
from services.learner.features import feature_space
from services.learner.online import RoutingLearner
from services.learner.service import CHECKPOINT_DIR, entry_order
from services.learner.shadow import ShadowEvaluator

CODE = [{"role": "user", "content": "Write a Python function that reverses a string."}]


def learner_status(http: Any) -> dict[str, Any]:
    response = http.get("/admin/learner/status")
    assert response.status_code == 200, response.text
    return response.json()


def test_feedback_is_learned_checkpointed_and_only_then_acknowledged(http: Any, redis_server: Any, app_config: AppConfig) -> None:
    completion = http.post("/v1/chat/completions", json={"model": "auto", "messages": CODE, "max_tokens": 2, "temperature": 0})
    assert completion.status_code == 200, completion.text
    receipt = http.post("/v1/feedback", json={"id": completion.json()["id"], "rating": 1})
    assert receipt.status_code == 200 and receipt.json()["accepted"], receipt.text
    stream_id = receipt.json()["stream_id"]
    stream = app_config.learner.feedback.stream

    deadline = time.monotonic() + 120  # the learner checkpoints every learner.checkpoint_interval_s
    while True:
        status = learner_status(http)
        covered = entry_order(status["positions"][stream]) >= entry_order(stream_id)
        if covered and status["unacknowledged"] == 0:
            break
        assert time.monotonic() < deadline, f"the learner did not apply and checkpoint {stream_id}: {status}"
        time.sleep(0.5)

    assert status["counts"].get("feedback_positive", 0) >= 1
    pending = redis_server.client().xpending(stream, app_config.learner.consumer_group)
    assert pending["pending"] == 0
    checkpoint = load_snapshot(Path(app_config.learner.directory) / CHECKPOINT_DIR, app_config.learner.hmac_key())
    assert entry_order(checkpoint.state["positions"][stream]) >= entry_order(stream_id)  # acknowledged only once saved


def test_decisions_carry_the_policy_revision_that_made_them(http: Any) -> None:
    policy = http.get("/admin/policy")
    assert policy.status_code == 200, policy.text
    assert policy.json()["policy"] == "static"
    routed = http.post("/v1/route", json={"model": "auto", "messages": CODE})
    assert routed.status_code == 200, routed.text
    assert routed.json()["policy_revision"] == policy.json()["revision"]
    assert routed.headers["x-coe-policy-revision"] == str(policy.json()["revision"])


@pytest.fixture(scope="module")
def reward_model(reward_model_dir: Path) -> Any:
    from services.rewards.model import RewardModel

    return RewardModel.load(reward_model_dir)


def test_a_shadow_event_has_three_experts_answer_and_scores_them(
    http: Any, base_url: str, redis_server: Any, app_config: AppConfig, reward_model: Any, trained_router: Any
) -> None:
    completion = http.post("/v1/chat/completions", json={"model": "auto", "messages": CODE, "max_tokens": 2, "temperature": 0})
    assert completion.status_code == 200, completion.text
    key = f"{app_config.learner.feedback.record_prefix}:{completion.json()['id']}"
    deadline = time.monotonic() + 10
    while (raw := redis_server.client().get(key)) is None:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    record = CompletionRecord.model_validate_json(raw)
    request = ShadowRequest(completion_id=record.id, messages=tuple(CODE), record=record)  # type: ignore[arg-type]
    learner = RoutingLearner(
        [expert.name for expert in app_config.experts], feature_space(trained_router, app_config.learner), app_config.learner
    )

    evaluator = ShadowEvaluator(reward_model, f"{base_url}/v1", max_tokens=4, seed=0, api_key=app_config.learner.shadow.api_key())
    outcome = evaluator.evaluate(request, learner)

    assert outcome is not None
    assert outcome.static_expert == record.expert  # the static router served this one
    assert outcome.static_expert in outcome.rewards and outcome.online_expert in outcome.rewards
    assert len(outcome.rewards) >= 2  # both policies' choices (one, when they agree) and one more expert
    assert all(math.isfinite(reward) for reward in outcome.rewards.values())
    assert outcome.best in outcome.rewards
    assert learner.apply_shadow(outcome) == "shadow"
    assert len(learner.window) == 1 and learner.model.tree_instances.sum() == app_config.learner.driftmoe.top_k
