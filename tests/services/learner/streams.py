"""Stream helpers of the learner tests: routing features of a clear category, records, appends."""

from __future__ import annotations

import time
import uuid
from typing import Any

import numpy as np

from services.config import AppConfig
from services.learner.events import EVENT_FIELD, CompletionRecord, FeedbackEvent, ShadowRequest
from services.learner.features import FeatureSpace, feature_space
from services.learner.online import RoutingLearner, ShadowOutcome, static_choice
from services.router.decision import RankedExpert, RouteDecision


def space_of(config: AppConfig, trained_router: Any) -> FeatureSpace:
    return feature_space(trained_router, config.learner)


def features_for(space: FeatureSpace, category: str, rng: np.random.Generator) -> tuple[float, ...]:
    """A request clearly of ``category``: its probability near one, the projection random."""
    probabilities = np.full(len(space.taxonomy), 0.01)
    probabilities[space.taxonomy.index(category)] = 1 - 0.01 * (len(space.taxonomy) - 1)
    return tuple(float(v) for v in np.concatenate([rng.normal(0, 0.3, space.projection_dim), probabilities]))


def record(features: tuple[float, ...], expert: str, router_version: str, category: str, ranked: tuple[str, ...] = ()) -> CompletionRecord:
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    decision = RouteDecision(
        expert=expert, policy="static", category=category, router_version=router_version, features=features,
        ranked=tuple(RankedExpert(expert=name, score=1.0 - i / 10) for i, name in enumerate(ranked or (expert,))),
    )
    return CompletionRecord(id=completion_id, created=int(time.time()), requested_model="auto", expert=expert, decision=decision)


def append(redis: Any, stream: str, event: FeedbackEvent | ShadowRequest) -> str:
    return redis.xadd(stream, {EVENT_FIELD: event.model_dump_json()}).decode()


def pending(redis: Any, config: AppConfig, stream: str | None = None) -> int:
    """Entries of ``stream`` (default: the feedback stream) delivered to the learner and not acknowledged."""
    return int(redis.xpending(stream or config.learner.feedback.stream, config.learner.consumer_group)["pending"])


class TableEvaluator:
    """Scores answers from a ground-truth quality table instead of generating them: the stream is
    simulated. ``truth`` may be changed between events (an expert breaking)."""

    def __init__(self, truth: dict[str, float], rng: np.random.Generator) -> None:
        self.truth = truth
        self.rng = rng

    def evaluate(self, request: ShadowRequest, learner: RoutingLearner) -> ShadowOutcome:
        features = request.record.decision.features
        assert features is not None
        static = static_choice(request.record.decision)
        online = learner.choose(features, fallback=static)
        rewards = {expert: self.truth.get(expert, 0.2) + float(self.rng.normal(0, 0.01)) for expert in learner.experts}
        return ShadowOutcome(request.completion_id, features, static, online, rewards)


def append_shadow_events(redis: Any, config: AppConfig, space: FeatureSpace, router_version: str,
                         rng: np.random.Generator, count: int) -> None:
    """``count`` math requests the static router sent to the general expert, sampled for the shadow."""
    for _ in range(count):
        event_record = record(features_for(space, "math", rng), "smollm2", router_version, "math")
        append(redis, config.learner.shadow.stream, ShadowRequest(
            completion_id=event_record.id, messages=({"role": "user", "content": "2+2?"},), record=event_record))
