"""The contextual-bandit routing policy: disjoint LinUCB over the routing features.

One Bayesian linear regression per expert predicts the reward of that expert's answer from the
request's features (the embedding's projection and the stage-1 category probabilities); the
expert with the highest upper confidence bound (mean plus one predictive standard deviation, as
river's ``LinUCBDisjoint`` scores it) serves. Exponential forgetting lets old evidence fade, which
is what makes it recover quickly when an expert gets better or worse (``docs/learner.md``).

Why not river's ``LinUCBDisjoint`` (which this policy used before): its forgetting scales the
whole precision matrix, the prior included, so after some thousand updates a direction the
features never vary along keeps no precision at all, and inverting the matrix fails
(``LinAlgError: Singular matrix``). The routing features always have such a direction (the bias
against stage-1 probabilities, which sum to one); the routing simulation hit it within 9,000
events. Here forgetting pulls the evidence back towards the prior instead, so the precision never
falls below the prior's and the learner can run forever.

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

import random
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

import numpy as np
import torch

from services.learner.config import LinUCBSettings

__all__ = ["LinUCBRouter"]


class ForgettingRegression:
    """Bayesian linear regression (known noise precision ``beta``, prior ``N(0, I/alpha)``) whose
    forgetting decays the evidence towards the prior rather than towards nothing.

    Each update with ``forgetting = s < 1`` is ``P ← s·P + (1 − s)·(alpha·I + beta·x xᵀ)`` and
    ``η ← s·η + (1 − s)·beta·y·x``: the exponential moving average river's ``smoothing`` takes of
    the evidence, with the prior kept in it. ``s = 1`` accumulates without forgetting (Bishop 3.51).
    """

    def __init__(self, n_features: int, alpha: float, beta: float, forgetting: float) -> None:
        self.alpha, self.beta, self.forgetting = alpha, beta, forgetting
        self.precision = np.eye(n_features) * alpha
        self.eta = np.zeros(n_features)
        self._covariance: np.ndarray | None = None  # the inverse of ``precision``, until the next update

    def learn_one(self, x: np.ndarray, y: float) -> None:
        evidence = self.beta * np.outer(x, x)
        if self.forgetting < 1:
            s = self.forgetting
            self.precision = s * self.precision + (1 - s) * (evidence + self.alpha * np.eye(len(x)))
            self.eta = s * self.eta + (1 - s) * self.beta * y * x
        else:
            self.precision = self.precision + evidence
            self.eta = self.eta + self.beta * y * x
        self._covariance = None

    def upper_bound(self, x: np.ndarray) -> float:
        """Predictive mean plus one predictive standard deviation."""
        if self._covariance is None:
            self._covariance = np.linalg.inv(self.precision)  # never below alpha·I: always invertible
        mean = float(x @ (self._covariance @ self.eta))
        return mean + float(np.sqrt(1.0 / self.beta + x @ self._covariance @ x))


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
        self._arms = {expert: self._new_arm() for expert in self.classes}
        self._rng = random.Random(settings.seed)

    def _new_arm(self) -> ForgettingRegression:
        settings = self.settings
        return ForgettingRegression(
            self.n_features + 1, alpha=settings.prior_precision, beta=1.0 / settings.reward_noise**2, forgetting=settings.forgetting
        )

    # ---- inference -------------------------------------------------------------------------

    def predict_one(self, x: np.ndarray) -> Hashable:
        """The expert with the highest upper confidence bound on its reward (ties: a seeded draw)."""
        context = self._context(x)
        bounds = {expert: arm.upper_bound(context) for expert, arm in self._arms.items()}
        best = max(bounds.values())
        tied = [expert for expert, bound in bounds.items() if bound == best]
        return tied[0] if len(tied) == 1 else self._rng.choice(tied)

    # ---- learning --------------------------------------------------------------------------

    def learn_rewards(self, x: np.ndarray, rewards: Mapping[Hashable, float]) -> None:
        """A shadow outcome: each scored expert's reward, centred on the outcome's mean."""
        known = {expert: float(value) for expert, value in rewards.items() if expert in self.classes}
        if not known:
            return
        mean = sum(known.values()) / len(known)
        context = self._context(x)
        for expert, value in sorted(known.items(), key=lambda item: str(item[0])):
            self._arms[expert].learn_one(context, value - mean)
        self.updates += 1

    def learn_one(self, x: np.ndarray, y: Hashable) -> bool:
        """Positive feedback on ``y`` (the served expert, or one the user preferred)."""
        self._check_label(y)
        self._arms[y].learn_one(self._context(x), self.settings.feedback_advantage)
        self.updates += 1
        return True

    def learn_negative(self, x: np.ndarray, served_label: Hashable) -> bool:
        """A thumbs-down on the served expert."""
        self._check_label(served_label)
        self._arms[served_label].learn_one(self._context(x), -self.settings.feedback_advantage)
        self.updates += 1
        return True

    # ---- state (the checkpoint format DriftMoE uses) ----------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        """Each arm's natural parameters, in the order of ``classes``."""
        tensors: dict[str, torch.Tensor] = {}
        for index, arm in enumerate(self._arms.values()):
            tensors[f"arm{index}.precision"] = torch.from_numpy(arm.precision.copy())
            tensors[f"arm{index}.eta"] = torch.from_numpy(arm.eta.copy())
        return tensors

    def river_parts(self) -> dict[str, Any]:
        return {}

    def plain_state(self) -> dict[str, Any]:
        return {"classes": [str(label) for label in self.classes], "updates": self.updates}

    @classmethod
    def restore(
        cls, n_features: int, settings: LinUCBSettings, tensors: Mapping[str, torch.Tensor], river_parts: Mapping[str, Any],
        plain: Mapping[str, Any],
    ) -> LinUCBRouter:
        router = cls(n_features, settings, plain["classes"])
        router.updates = int(plain.get("updates", 0))
        legacy = river_parts.get("policy")
        for index, arm in enumerate(router._arms.values()):
            if f"arm{index}.precision" in tensors:
                arm.precision = tensors[f"arm{index}.precision"].numpy().astype(np.float64)
                arm.eta = tensors[f"arm{index}.eta"].numpy().astype(np.float64)
            elif legacy is not None:  # a checkpoint of the river policy this one replaced
                router._adopt_river_arm(arm, legacy, router.classes[index])
            else:
                raise ValueError("the checkpoint holds no LinUCB policy")
        return router

    def _adopt_river_arm(self, arm: ForgettingRegression, policy: Any, expert: Hashable) -> None:
        """Carry over an arm of river's ``LinUCBDisjoint`` (river 0.26's state: ``_idx``,
        ``_ss_arr``, ``_eta_arr``), so an upgrade keeps what the bandit learnt; the prior that its
        forgetting wore away is restored."""
        regression = getattr(policy, "_bayes_lin_regs", {}).get(expert)
        if regression is None:
            return  # the expert was never updated: the prior alone
        try:
            order = [regression._idx[name] for name in ["bias", *[f"x{index}" for index in range(self.n_features)]]]
            precision = np.asarray(regression._ss_arr)[np.ix_(order, order)]
            eta = np.asarray(regression._eta_arr)[order]
        except (AttributeError, KeyError, IndexError) as exc:
            raise ValueError(f"the checkpoint's LinUCB policy is from an unknown river version ({exc!r})") from exc
        arm.precision = precision + np.eye(len(order)) * arm.alpha
        arm.eta = eta

    # ---- helpers ---------------------------------------------------------------------------

    def _context(self, x: np.ndarray) -> np.ndarray:
        """The features with a bias in front."""
        vector = np.asarray(x, dtype=np.float64).ravel()
        if vector.shape[0] != self.n_features:
            raise ValueError(f"expected {self.n_features} features, got {vector.shape[0]}")
        return np.concatenate(([1.0], vector))

    def _check_label(self, y: Hashable) -> None:
        if y not in self.classes:
            raise ValueError(f"label {y!r} is not one of the bandit's experts {self.classes}")
