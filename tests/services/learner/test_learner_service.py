"""The learner's loop against a real Redis: exactly-once across restarts, signed checkpoints,
promotion and rollback, and the router replica's side of the policy it publishes."""

from __future__ import annotations

import os
import random
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.config import AppConfig
from services.learner.checkpoint import RIVER_NAME, CheckpointError, load_snapshot
from services.learner.config import LearnerConfig
from services.learner.events import FeedbackEvent, ShadowRequest
from services.learner.features import FeatureSpace
from services.learner.online import RoutingLearner
from services.learner.serving import PolicyFollower
from services.learner.service import LearnerService
from services.learner.shadow import RewardModelWatcher
from services.router.decision import RankedExpert, RouteDecision
from tests.services.learner.streams import TableEvaluator, append, append_shadow_events, features_for, pending, record, space_of


def test_every_feedback_is_applied_exactly_once_across_restarts(learner_config: AppConfig, redis_server: Any, trained_router: Any) -> None:
    redis = redis_server.client()
    space = space_of(learner_config, trained_router)
    rng = np.random.default_rng(0)
    stream = learner_config.learner.feedback.stream
    first = LearnerService(learner_config)  # creates the consumer group before anything is appended
    for _ in range(10):
        event_record = record(features_for(space, "math", rng), "smollm2-math", trained_router.version, "math")
        append(redis, stream, FeedbackEvent(completion_id=event_record.id, rating=1, received_at=time.time(), record=event_record))

    # Three reads of three: the second crosses checkpoint_every (4) and checkpoints six; the third
    # applies three more and the process dies before any checkpoint covers them.
    assert [first.step() for _ in range(3)] == [3, 3, 3]
    assert pending(redis, learner_config) == 3
    del first

    # The second life dies between writing its checkpoint and acknowledging it.
    second = LearnerService(learner_config)
    assert second.learner.counts["feedback_positive"] == 6  # the checkpoint, not the lost work
    assert second.step() == 3  # the three pending entries, delivered again and applied now
    second.save_checkpoint()
    assert pending(redis, learner_config) == 3
    del second

    third = LearnerService(learner_config)
    applied = third.drain()
    assert applied == 1  # the replayed three were covered by the checkpoint: acknowledged, not applied
    assert third.learner.counts["feedback_positive"] == 10
    assert int(third.learner.model.tree_instances.sum()) == 10 * learner_config.learner.driftmoe.top_k
    assert pending(redis, learner_config) == 0


def test_a_tampered_or_foreign_checkpoint_is_refused(learner_config: AppConfig, redis_server: Any, trained_router: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    redis = redis_server.client()
    space = space_of(learner_config, trained_router)
    rng = np.random.default_rng(1)
    service = LearnerService(learner_config)
    for index in range(6):
        event_record = record(features_for(space, "coding", rng), "smollm2-code", trained_router.version, "coding")
        append(redis, learner_config.learner.feedback.stream,
               FeedbackEvent(completion_id=event_record.id, rating=1 if index % 2 else -1, received_at=time.time(), record=event_record))
    service.drain()
    probe = np.asarray(features_for(space, "coding", rng))

    restored = load_snapshot(service.checkpoint_path, learner_config.learner.hmac_key())
    assert restored.model.predict_one(probe) == service.learner.model.predict_one(probe)
    assert np.allclose(restored.model.router_weights(probe), service.learner.model.router_weights(probe))
    assert restored.state["learner"]["counts"] == dict(service.learner.counts)

    monkeypatch.setenv(learner_config.learner.hmac_key_env, "another-key-" + "x" * 32)
    with pytest.raises(CheckpointError, match="HMAC"):
        LearnerService(learner_config)
    monkeypatch.delenv(learner_config.learner.hmac_key_env)

    pickle_path = service.checkpoint_path / RIVER_NAME
    pickle_path.chmod(0o644)
    data = bytearray(pickle_path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    pickle_path.write_bytes(bytes(data))
    with pytest.raises(CheckpointError, match="does not match"):
        LearnerService(learner_config)


def with_policy(config: AppConfig, policy: str) -> AppConfig:
    return config.model_copy(update={"learner": config.learner.model_copy(update={"policy": policy})})


@pytest.mark.parametrize("policy", ["driftmoe", "linucb"])
def test_the_online_policy_is_promoted_when_it_wins_and_rolled_back_when_it_loses(
    learner_config: AppConfig, redis_server: Any, trained_router: Any, policy: str
) -> None:
    """A simulated stream: a ground-truth quality table, and shadow events scored from it.

    Either policy goes the whole way: learned, checkpointed, published as a signed snapshot, and
    followed by a router replica, which then serves its choice.
    """
    learner_config = with_policy(learner_config, policy)
    redis = redis_server.client()
    space = space_of(learner_config, trained_router)
    rng = np.random.default_rng(2)
    truth = {"smollm2": 0.4, "smollm2-math": 0.9, "smollm2-code": 0.1}  # for math requests

    service = LearnerService(learner_config, evaluator=TableEvaluator(truth, rng))  # type: ignore[arg-type]
    experts = frozenset(service.experts)
    follower = PolicyFollower(learner_config.learner)

    def shadow_events(count: int) -> None:
        # The static router keeps sending math to the general expert.
        append_shadow_events(redis, learner_config, space, trained_router.version, rng, count)

    shadow_events(30)
    service.drain()
    assert service.learner.serving == "online"
    assert follower.check()
    assert follower.current.pointer.policy == "online" and follower.current.revision >= 1
    promoted_revision = follower.current.revision

    decision = RouteDecision(expert="smollm2", policy="static", category="math", router_version=trained_router.version,
                             features=features_for(space, "math", rng), ranked=(RankedExpert(expert="smollm2", score=0.5),))
    served = follower.current.apply(decision, space.identity, experts)
    assert (served.expert, served.policy, served.policy_revision) == ("smollm2-math", "online", promoted_revision)
    uncertain = decision.model_copy(update={"uncertain": True})
    assert follower.current.apply(uncertain, space.identity, experts).expert == "smollm2"  # the fallback holds

    truth.update({"smollm2-math": 0.0})  # the adapter breaks: the online choice now loses to the static one
    shadow_events(12)
    service.drain()
    assert service.learner.serving == "static"
    assert follower.check()
    assert follower.current.pointer.policy == "static" and follower.current.revision > promoted_revision
    rolled_back = follower.current.apply(decision, space.identity, experts)
    assert (rolled_back.expert, rolled_back.policy) == ("smollm2", "static")


def test_a_checkpoint_of_another_policy_is_not_resumed(learner_config: AppConfig, redis_server: Any, trained_router: Any) -> None:
    first = LearnerService(learner_config)
    first.learner.counts["feedback_positive"] = 5
    first.save_checkpoint()
    switched = LearnerService(with_policy(learner_config, "linucb"))
    assert type(switched.learner.model).__name__ == "LinUCBRouter" and not switched.learner.counts
    assert any("routing policy (driftmoe; learner.policy is now linucb)" in message for message in switched.resets), \
        "a DriftMoE checkpoint is not handed to the bandit: the learner starts over and says why"
    assert switched.status()["policy"] == "linucb"


def test_a_router_with_another_taxonomy_resets_the_learner(learner_config: AppConfig, trained_router: Any, caplog: pytest.LogCaptureFixture) -> None:
    service = LearnerService(learner_config)
    other = FeatureSpace("another-embedder", ("a", "b"), 8, learner_config.learner.projection_dim, 0)
    service.learner = RoutingLearner(service.experts, other, learner_config.learner)
    service.learner.counts["feedback_positive"] = 5
    service.check_router()
    assert service.learner.space == space_of(learner_config, trained_router)
    assert not service.learner.counts
    assert any("learner reset" in message and "taxonomy" in message and "embedder" in message for message in service.resets)


def test_negative_feedback_teaches_only_the_router() -> None:
    config = LearnerConfig(directory="/nonexistent", driftmoe={"n_trees": 3, "top_k": 1, "batch_size": 1})
    space = FeatureSpace("e", ("a", "b"), 4, 2, 0)
    learner = RoutingLearner(["x", "y"], space, config)
    rng = random.Random(0)
    features = tuple(rng.random() for _ in range(space.dimension))
    learner.apply_feedback(FeedbackEvent(completion_id="c", rating=1, received_at=0.0, record=record(features, "x", "v", "a")))
    instances = learner.model.tree_instances.copy()
    weights = learner.model.router_weights(np.asarray(features))
    outcome = learner.apply_feedback(FeedbackEvent(completion_id="d", rating=-1, received_at=0.0, record=record(features, "x", "v", "a")))
    assert outcome == "feedback_negative"
    assert (learner.model.tree_instances == instances).all()  # no tree learned
    assert not np.allclose(learner.model.router_weights(np.asarray(features)), weights)  # the router did


def test_shadow_evaluation_waits_for_the_reward_model_and_takes_it_up_when_it_appears(
    learner_config: AppConfig, redis_server: Any, trained_router: Any, reward_model_dir: Path, tmp_path: Path
) -> None:
    """The service starts before the reward model exists (``make run`` trains it in the background)."""
    from services.learner.shadow import build_evaluator

    folder = tmp_path / "reward"
    config = learner_config.model_copy(update={"training": learner_config.training.model_copy(update={"reward_model": str(folder)})})
    redis = redis_server.client()
    service = LearnerService(config, evaluator=build_evaluator(config), redis=redis)

    waiting = service.status()["shadow_evaluation"]
    assert waiting["state"] == "waiting" and f"waiting for a reward model at {folder}" in waiting["reason"]
    event_record = record(features_for(space_of(config, trained_router), "math", np.random.default_rng(3)), "smollm2", trained_router.version, "math")
    append(redis, config.learner.shadow.stream,
           ShadowRequest(completion_id=event_record.id, messages=({"role": "user", "content": "2+2?"},), record=event_record))
    service.drain()
    assert service.learner.counts["shadow_without_reward_model"] == 1  # counted and acknowledged, never a crash
    assert service.status()["unacknowledged"] == 0

    staging = tmp_path / ".reward.tmp"  # the training job writes elsewhere and renames, as here
    shutil.copytree(reward_model_dir, staging)
    os.replace(staging, folder)
    deadline = time.monotonic() + 30  # the learner looks every router.watch_interval_s
    while service.status()["shadow_evaluation"]["state"] != "ready":
        assert time.monotonic() < deadline, service.status()["shadow_evaluation"]
        service.step(block_ms=100)
    assert service.status()["shadow_evaluation"] == {"state": "ready", "reward_model": str(folder), "reason": None}

    # A broken replacement is refused; the model already loaded keeps scoring.
    weights = folder / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    manifest = folder / "manifest.json"
    manifest.write_text(manifest.read_text(encoding="utf-8") + "\n", encoding="utf-8")  # a new artifact, as far as the watcher can tell
    assert isinstance(service.evaluator, RewardModelWatcher)
    service.evaluator.poll(force=True)
    status = service.status()["shadow_evaluation"]
    assert status["state"] == "ready" and "does not match its recorded sha256" in status["reason"]
    assert "the previous one keeps scoring" in status["reason"]
