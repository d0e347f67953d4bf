"""The online routing policy: what each kind of event teaches, and when the online policy may serve.

Labels are LLM experts. The policy is DriftMoE (``learner.policy: driftmoe``, the default) or a
contextual bandit (``linucb``). A shadow event (several experts answered the same request and the
reward model scored them) teaches DriftMoE the best-scoring expert and the bandit every scored
expert's reward, and is the only event that compares the static and online policies. Positive
feedback labels the request with the served expert; a preferred expert named in feedback labels
it with that expert. Negative feedback without a label teaches DriftMoE's router which trees not
to trust (``DriftMoE.learn_negative``) and lowers the served expert's reward for the bandit.
"""

from __future__ import annotations

import random
from collections import Counter, deque
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from services.learner.config import LearnerConfig
from services.learner.checkpoint import RoutingModel
from services.learner.driftmoe import DriftMoE
from services.telemetry.metrics import LEARNER_ENTRIES, LEARNER_POLICY_CHANGES
from services.learner.linucb import LinUCBRouter
from services.learner.events import FeedbackEvent
from services.learner.features import FeatureSpace
from services.router.decision import RouteDecision

Serving = Literal["static", "online"]
PolicyChange = Literal["promote", "rollback", "refresh"]


def static_choice(decision: RouteDecision) -> str:
    """The static router's expert for a request, even when the online policy served it.

    The online policy only overrides confident decisions, whose static choice heads ``ranked``.
    """
    if decision.policy == "online" and decision.ranked:
        return decision.ranked[0].expert
    return decision.expert


@dataclass(frozen=True)
class ShadowOutcome:
    """Rewards of several experts' answers to one request, and who each policy would have chosen."""

    completion_id: str
    features: tuple[float, ...]
    static_expert: str
    online_expert: str
    rewards: dict[str, float]

    @property
    def best(self) -> str:
        return max(sorted(self.rewards), key=self.rewards.__getitem__)


class RoutingLearner:
    """The online routing policy (DriftMoE or the bandit) over routing features, with the promotion window."""

    def __init__(self, experts: Sequence[str], space: FeatureSpace, config: LearnerConfig, model: RoutingModel | None = None) -> None:
        self.experts = sorted(experts)
        self.space = space
        self.config = config
        self.model = model or new_model(space.dimension, config, self.experts)
        self.window: deque[tuple[float, float]] = deque(maxlen=config.promotion.window)  # (static, online) rewards
        self.counts: Counter[str] = Counter()
        self.serving: Serving = "static"
        self.revision = 0
        self.labelled_since_publish = 0

    # ------------------------------------------------------------------ choosing
    def choose(self, features: Sequence[float], fallback: str) -> str:
        """The online policy's expert for a request; ``fallback`` before it knows any."""
        expert = self.model.predict_one(np.asarray(features, dtype=np.float64))
        return str(expert) if expert is not None else fallback

    # ------------------------------------------------------------------ learning
    def apply_feedback(self, event: FeedbackEvent) -> str:
        """Learn what the feedback says; returns what was done, for the counters and the logs."""
        features = event.record.decision.features
        if features is None or len(features) != self.space.dimension:
            return self.count("feedback_without_features")
        x = np.asarray(features, dtype=np.float64)
        if event.preferred_expert is not None and event.preferred_expert in self.experts:
            self._learn(x, event.preferred_expert)
            return self.count("feedback_preferred_expert")
        served = event.record.expert
        label = event.label()
        if label == "neutral":
            return self.count("feedback_neutral")
        if served not in self.experts:
            return self.count("feedback_unknown_expert")
        if label == "positive":
            self._learn(x, served)
            return self.count("feedback_positive")
        learned = self.model.learn_negative(x, served)
        return self.count("feedback_negative" if learned else "feedback_negative_no_tree")

    def apply_shadow(self, outcome: ShadowOutcome) -> str:
        """A fully labelled event: the trees learn the best expert, the window gets both policies' rewards."""
        if len(outcome.features) != self.space.dimension:
            return self.count("shadow_without_features")
        static_reward = outcome.rewards[outcome.static_expert]
        online_reward = outcome.rewards[outcome.online_expert]
        self.window.append((static_reward, online_reward))
        # DriftMoE learns the best-scoring expert; the bandit every scored expert's reward.
        self.model.learn_rewards(np.asarray(outcome.features, dtype=np.float64), outcome.rewards)
        self.labelled_since_publish += 1
        return self.count("shadow")

    def _learn(self, x: np.ndarray, expert: str) -> None:
        self.model.learn_one(x, expert)
        self.labelled_since_publish += 1

    def count(self, what: str) -> str:
        """Count an outcome for the status and for the exported metrics."""
        self.counts[what] += 1
        LEARNER_ENTRIES.inc(outcome=what)
        return what

    # ------------------------------------------------------------------ promotion
    def lead(self) -> float | None:
        """Mean online reward minus mean static reward over the window; None until it holds enough events."""
        if len(self.window) < self.config.promotion.min_events:
            return None
        rewards = np.asarray(self.window)
        return float(rewards[:, 1].mean() - rewards[:, 0].mean())

    def policy_change(self) -> tuple[PolicyChange | None, str]:
        """What the serving policy should do now, and why (for the pointer and the logs)."""
        lead, margin = self.lead(), self.config.promotion.margin
        described = "no comparison yet" if lead is None else f"online leads static by {lead:+.4f} over {len(self.window)} shadow events"
        if self.serving == "static":
            if lead is not None and lead >= margin:
                return "promote", f"{described} (margin {margin:g})"
            return None, described
        if lead is None or lead < margin:
            return "rollback", f"{described}, below the margin {margin:g}"
        if self.labelled_since_publish >= self.config.promotion.refresh_every_events:
            return "refresh", f"{described}; {self.labelled_since_publish} labelled events since the last snapshot"
        return None, described

    def changed(self, change: PolicyChange, revision: int) -> None:
        """Record that the serving policy moved to ``revision``."""
        LEARNER_POLICY_CHANGES.inc(change=change)
        self.revision = revision
        self.serving = "static" if change == "rollback" else "online"
        self.labelled_since_publish = 0

    # ------------------------------------------------------------------ state
    def state(self) -> dict[str, Any]:
        return {
            "experts": self.experts,
            "feature_space": self.space.describe(),
            "window": [list(pair) for pair in self.window],
            "counts": dict(self.counts),
            "serving": self.serving,
            "revision": self.revision,
            "labelled_since_publish": self.labelled_since_publish,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any], space: FeatureSpace, config: LearnerConfig, model: RoutingModel) -> RoutingLearner:
        learner = cls(state["experts"], space, config, model=model)
        learner.window.extend(tuple(pair) for pair in state["window"][-config.promotion.window :])
        learner.counts.update(state["counts"])
        learner.serving = state["serving"]
        learner.revision = int(state["revision"])
        learner.labelled_since_publish = int(state["labelled_since_publish"])
        return learner


def new_model(n_features: int, config: LearnerConfig, experts: Sequence[str]) -> RoutingModel:
    """An untrained model of the configured policy (``learner.policy``)."""
    if config.policy == "linucb":
        return LinUCBRouter(n_features, config.linucb, classes=experts)
    return DriftMoE(n_features, config.driftmoe, classes=experts)


def third_expert(experts: Sequence[str], chosen: set[str], rng: random.Random) -> str | None:
    """One more expert for a shadow comparison, so that an expert neither policy picks still gets scored."""
    others = sorted(set(experts) - chosen)
    return rng.choice(others) if others else None
