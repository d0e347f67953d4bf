"""The learner under faults, against a real Redis: an entry whose application fails is neither
skipped nor applied twice, a poisoned one ends in the dead-letter stream, a policy that cannot be
published does not cost entries, and a checkpoint is never half replaced."""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from services.config import AppConfig
from services.learner.dead_letters import forget_consumer_group, replay_dead_letters
from services.learner.events import FeedbackEvent
from services.learner.service import EntryFailed, LearnerService, LearnerStateLost
from tests.services.learner.streams import TableEvaluator, append, append_shadow_events, features_for, pending, record, space_of


def feedback_events(config: AppConfig, trained_router: Any, count: int, seed: int) -> list[str]:
    """Append ``count`` positive math feedbacks; returns their completion ids in stream order."""
    space = space_of(config, trained_router)
    rng = np.random.default_rng(seed)
    ids = []
    for _ in range(count):
        event_record = record(features_for(space, "math", rng), "smollm2-math", trained_router.version, "math")
        append(_redis(config), config.learner.feedback.stream,
               FeedbackEvent(completion_id=event_record.id, rating=1, received_at=time.time(), record=event_record))
        ids.append(event_record.id)
    return ids


def _redis(config: AppConfig) -> Any:
    import redis

    return redis.Redis.from_url(config.cache.resolved_url(), socket_timeout=5)


def failing_for(service: LearnerService, failures: dict[str, int]) -> None:
    """Make applying the named completions raise, each for as many attempts as given (-1: always),
    as an error inside river or torch would; every other entry is applied by the real learner."""
    real: Callable[[FeedbackEvent], str] = service.learner.apply_feedback

    def apply_feedback(event: FeedbackEvent) -> str:
        left = failures.get(event.completion_id, 0)
        if left:
            failures[event.completion_id] = left - 1
            raise FloatingPointError(f"poisoned update for {event.completion_id}")
        return real(event)

    service.learner.apply_feedback = apply_feedback  # type: ignore[method-assign]


def step_until_quiet(service: LearnerService, limit: int = 50) -> list[str]:
    """Step as the run loop does (a failed entry is read again); returns the failures seen."""
    failures = []
    for _ in range(limit):
        try:
            if not service.step() and service._pending_cursor is None:
                if not service.step():
                    break
        except EntryFailed as exc:
            failures.append(str(exc))
    service.checkpoint()
    return failures


def applied(service: LearnerService) -> int:
    return service.learner.counts["feedback_positive"]


def test_an_entry_that_fails_once_is_applied_later_and_nothing_after_it_is_lost(
    learner_config: AppConfig, redis_server: Any, trained_router: Any
) -> None:
    service = LearnerService(learner_config)
    ids = feedback_events(learner_config, trained_router, 7, seed=10)
    failing_for(service, {ids[1]: 1})  # the second entry of the first read of three fails once

    failures = step_until_quiet(service)
    assert len(failures) == 1 and ids[1] in failures[0]
    assert applied(service) == 7, "the failed entry and the rest of its read batch were applied after the failure"
    assert int(service.learner.model.tree_instances.sum()) == 7 * learner_config.learner.driftmoe.top_k
    assert pending(redis_server.client(), learner_config) == 0

    restarted = LearnerService(learner_config)
    assert restarted.drain() == 0 and applied(restarted) == 7, "after a restart nothing is applied twice"


def test_a_failure_while_replaying_pending_entries_does_not_skip_them(
    learner_config: AppConfig, redis_server: Any, trained_router: Any
) -> None:
    first = LearnerService(learner_config)
    ids = feedback_events(learner_config, trained_router, 3, seed=11)
    assert first.step() == 3  # read and applied, then the process dies before any checkpoint
    del first

    second = LearnerService(learner_config)
    failing_for(second, {ids[0]: 1})  # the first replayed entry fails once
    failures = step_until_quiet(second)
    assert len(failures) == 1
    assert applied(second) == 3, "all three pending entries were applied on replay, none skipped"
    assert pending(redis_server.client(), learner_config) == 0


def test_a_poisoned_entry_goes_to_the_dead_letter_stream_and_can_be_replayed(
    learner_config: AppConfig, redis_server: Any, trained_router: Any
) -> None:
    redis = redis_server.client()
    settings = learner_config.learner
    service = LearnerService(learner_config)
    ids = feedback_events(learner_config, trained_router, 5, seed=12)
    failing_for(service, {ids[2]: -1})

    failures = step_until_quiet(service)
    assert len(failures) == settings.max_attempts - 1  # the last attempt moves it instead of failing the read
    assert applied(service) == 4 and service.learner.counts["dead_lettered"] == 1
    assert pending(redis, learner_config) == 0, "the poisoned entry was acknowledged once it was dead-lettered"
    status = service.status()
    assert status["dead_letters"] == 1
    ((_, letter),) = redis.xrange(settings.dead_letter_stream)
    assert letter[b"stream"].decode() == settings.feedback.stream
    assert b"FloatingPointError" in letter[b"error"] and ids[2].encode() in letter[b"event"]

    # The cause is fixed (a new learner process); `coe learner replay-dead` sends the letter back.
    assert replay_dead_letters(learner_config, redis) == {"replayed": 1, "kept": 0}
    assert redis.xlen(settings.dead_letter_stream) == 0
    fixed = LearnerService(learner_config)
    assert fixed.drain() == 1 and applied(fixed) == 5, "the replayed entry was applied, once"


def test_a_policy_that_cannot_be_published_costs_no_entries(
    learner_config: AppConfig, redis_server: Any, trained_router: Any
) -> None:
    """The policy folder is replaced by a file while the online policy earns its promotion."""
    redis = redis_server.client()
    space = space_of(learner_config, trained_router)
    rng = np.random.default_rng(13)
    truth = {"smollm2": 0.4, "smollm2-math": 0.9, "smollm2-code": 0.1}
    service = LearnerService(learner_config, evaluator=TableEvaluator(truth, rng))  # type: ignore[arg-type]
    append_shadow_events(redis, learner_config, space, trained_router.version, rng, 30)
    policy_folder = service.policies.folder
    shutil.rmtree(policy_folder, ignore_errors=True)
    policy_folder.parent.mkdir(parents=True, exist_ok=True)
    policy_folder.write_text("not a folder", encoding="utf-8")
    try:
        service.drain()
        assert service.learner.counts["shadow"] == 30, "every shadow event was applied while publishing failed"
        assert service.learner.counts["publish_failed"] >= 1 and service.learner.serving == "static"
        assert pending(redis, learner_config, stream=learner_config.learner.shadow.stream) == 0
    finally:
        policy_folder.unlink()
    append_shadow_events(redis, learner_config, space, trained_router.version, rng, 1)
    service.drain()
    assert service.learner.serving == "online", "the promotion was published once the folder was writable"
    assert service.policies.current().policy == "online"


def test_the_checkpoint_is_replaced_in_one_step_and_its_loss_is_not_silent(
    learner_config: AppConfig, redis_server: Any, trained_router: Any
) -> None:
    service = LearnerService(learner_config)
    feedback_events(learner_config, trained_router, 4, seed=14)
    service.drain()
    checkpoint = service.checkpoint_path
    assert checkpoint.is_symlink(), "the checkpoint is a link swapped by one rename"
    first_target = os.readlink(checkpoint)
    feedback_events(learner_config, trained_router, 2, seed=15)
    service.drain()
    assert os.readlink(checkpoint) != first_target and checkpoint.resolve().is_dir()
    siblings = sorted(path.name for path in checkpoint.parent.iterdir() if path.name.startswith(".checkpoint"))
    assert siblings == [os.readlink(checkpoint)], "earlier checkpoints are removed once replaced"

    # The checkpoint is lost (deleted by hand, a volume not mounted) after entries were acknowledged.
    shutil.rmtree(checkpoint.resolve())
    checkpoint.unlink()
    with pytest.raises(LearnerStateLost, match="acknowledged entries .*6 of") as refused:
        LearnerService(learner_config)
    assert "coe learner forget" in str(refused.value)
    streams = [learner_config.learner.feedback.stream, learner_config.learner.shadow.stream]
    assert forget_consumer_group(learner_config, redis_server.client()) == streams
    fresh = LearnerService(learner_config)
    assert fresh.drain() == 6, "after `forget`, the entries still in the stream are learned again"


def test_a_checkpoint_folder_from_before_the_link_layout_is_taken_over(
    learner_config: AppConfig, redis_server: Any, trained_router: Any, tmp_path: Path
) -> None:
    service = LearnerService(learner_config)
    feedback_events(learner_config, trained_router, 2, seed=16)
    service.drain()
    checkpoint = service.checkpoint_path
    target = checkpoint.resolve()
    checkpoint.unlink()
    shutil.copytree(target, checkpoint)  # a plain folder, as earlier releases wrote it
    resumed = LearnerService(learner_config)
    assert applied(resumed) == 2
    feedback_events(learner_config, trained_router, 1, seed=17)
    resumed.drain()
    assert checkpoint.is_symlink() and applied(LearnerService(learner_config)) == 3


def test_the_status_answers_while_the_loop_waits_for_entries(learner_config: AppConfig, redis_server: Any) -> None:
    """The loop blocks on the stream most of the time; /admin/learner/status must not wait behind it."""
    import threading

    service = LearnerService(learner_config)
    stop = threading.Event()
    loop = threading.Thread(target=service.run, args=(stop,), daemon=True)
    loop.start()
    answered = []
    try:
        for _ in range(5):
            asker = threading.Thread(target=lambda: answered.append(service.status()), daemon=True)
            asker.start()
            asker.join(timeout=10)
            assert not asker.is_alive(), "status() waited for the loop's lock and never got it"
    finally:
        stop.set()
        loop.join(timeout=15)
    assert len(answered) == 5
