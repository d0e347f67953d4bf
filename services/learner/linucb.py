"""The contextual-bandit routing policy: river's disjoint LinUCB over the routing features.

One Bayesian linear regression per expert predicts the reward of that expert's answer from the
request's features (the embedding's projection and the stage-1 category probabilities); the
expert with the highest upper confidence bound serves. Exponential forgetting (river's
``smoothing``) lets old evidence fade, which is what makes it recover quickly when an expert
gets better or worse (``docs/learner.md``: 256 events in the routing simulation, DriftMoE 374).

What it learns from:

- a shadow outcome: every scored expert's reward, centred on the outcome's mean, so that an
  expert learns how much better or worse it answered *this* request than the others did (a
  reward model scores easy prompts higher for every expert; the offset says nothing about who
  should serve);
- feedback: the served expert gains ``feedback_advantage`` on a thumbs-up and loses it on a
  thumbs-down; a named preferred expert gains it.

It has the interface the learner service, its signed checkpoints and the router replicas use for
DriftMoE (:mod:`services.learner.driftmoe`), so either can be configured (``learner.policy``).
"""

from __future__ import annotations

from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from river import bandit

from services.learner.config import LinUCBSettings

__all__ = ["LinUCBRouter"]


class LinUCBRouter:
    """A routing policy over a fixed set of experts; rewards in the reward model's units."""

    kind = "linucb"
    # The counters the learner's status reports for DriftMoE; a bandit has no trees to reset.
    drifts_detected = 0
    tree_resets = 0
    router_steps = 0

    def __init__(self, n_features: int, settings: LinUCBSettings, classes: Sequence[Hashable]) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be at least 1, got {n_features}")
        if not classes:
            raise ValueError("the bandit needs its experts up front")
        self.n_features = n_features
        self.settings = settings
        self.classes: list[Hashable] = list(dict.fromkeys(classes))
        self.updates = 0
        self._policy = bandit.LinUCBDisjoint(
            alpha=settings.prior_precision, beta=1.0 / settings.reward_noise**2, smoothing=settings.forgetting, seed=settings.seed
        )

    # ---- inference -------------------------------------------------------------------------

    def predict_one(self, x: np.ndarray) -> Hashable:
        """The expert with the highest upper confidence bound on its reward."""
        return self._policy.pull(self.classes, context=self._context(x))

    # ---- learning --------------------------------------------------------------------------

    def learn_rewards(self, x: np.ndarray, rewards: Mapping[Hashable, float]) -> None:
        """A shadow outcome: each scored expert's reward, centred on the outcome's mean."""
        known = {expert: float(value) for expert, value in rewards.items() if expert in self.classes}
        if not known:
            return
        mean = sum(known.values()) / len(known)
        context = self._context(x)
        for expert, value in sorted(known.items(), key=lambda item: str(item[0])):
            self._policy.update(expert, context, value - mean)
        self.updates += 1

    def learn_one(self, x: np.ndarray, y: Hashable) -> bool:
        """Positive feedback on ``y`` (the served expert, or one the user preferred)."""
        self._check_label(y)
        self._policy.update(y, self._context(x), self.settings.feedback_advantage)
        self.updates += 1
        return True

    def learn_negative(self, x: np.ndarray, served_label: Hashable) -> bool:
        """A thumbs-down on the served expert."""
        self._check_label(served_label)
        self._policy.update(served_label, self._context(x), -self.settings.feedback_advantage)
        self.updates += 1
        return True

    # ---- state (the checkpoint format DriftMoE uses) ----------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        return {}

    def river_parts(self) -> dict[str, Any]:
        return {"policy": self._policy}

    def plain_state(self) -> dict[str, Any]:
        return {"classes": [str(label) for label in self.classes], "updates": self.updates}

    @classmethod
    def restore(
        cls, n_features: int, settings: LinUCBSettings, tensors: Mapping[str, torch.Tensor], river_parts: Mapping[str, Any],
        plain: Mapping[str, Any],
    ) -> LinUCBRouter:
        policy = river_parts.get("policy")
        if not isinstance(policy, bandit.LinUCBDisjoint):
            raise ValueError("the checkpoint holds no LinUCB policy")
        router = cls(n_features, settings, plain["classes"])
        router._policy = policy
        router.updates = int(plain.get("updates", 0))
        return router

    # ---- helpers ---------------------------------------------------------------------------

    def _context(self, x: np.ndarray) -> dict[str, float]:
        vector = np.asarray(x, dtype=np.float64).ravel()
        if vector.shape[0] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {vector.shape[0]}")
        return {"bias": 1.0, **{f"x{index}": float(value) for index, value in enumerate(vector)}}

    def _check_label(self, y: Hashable) -> None:
        if y not in self.classes:
            raise ValueError(f"label {y!r} is not one of the bandit's experts {self.classes}")
