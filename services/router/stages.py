"""The two stages as small contracts: category probabilities, then a ranked list of experts."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from services.router.artifact import RouterArtifact
from services.router.assignment import Assignment, solve_assignment
from services.router.decision import RankedExpert


class CategoryClassifier:
    """Stage 1: ``p(category | x) = softmax((x·Wᵀ + b) / T)`` over unit-length embeddings."""

    def __init__(self, artifact: RouterArtifact) -> None:
        self.categories = artifact.manifest.taxonomy
        self._weight = artifact.weight  # (categories, dimension)
        self._bias = artifact.bias  # (categories,)
        self._temperature = artifact.manifest.temperature

    def probabilities(self, embeddings: np.ndarray) -> np.ndarray:
        logits = (embeddings @ self._weight.T + self._bias) / self._temperature  # (batch, categories)
        logits -= logits.max(axis=1, keepdims=True)
        exp = np.exp(logits)
        return exp / exp.sum(axis=1, keepdims=True)


def entropy(probabilities: np.ndarray) -> np.ndarray:
    """Shannon entropy in nats, per row."""
    return -(probabilities * np.log(np.clip(probabilities, 1e-12, 1.0))).sum(axis=-1)


class ExpertTable:
    """Stage 2: rank experts for a category by ``s(c, m) − λ·cost(m)/max cost``.

    Only experts that are both in the score table and in the running config are candidates.
    With a budget, the CoE assignment decides which experts are in use and which serves each
    category; the others in use follow as alternatives.
    """

    def __init__(
        self,
        scores: dict[str, dict[str, float]],
        costs: dict[str, float],
        shares: dict[str, float],
        general_expert: str,
        budget: float | None = None,
    ) -> None:
        self._experts = sorted({expert for row in scores.values() for expert in row} & set(costs) | {general_expert})
        self._scores = scores
        self._costs = {expert: costs[expert] for expert in self._experts}
        top = max(self._costs.values())
        self._cost_norm = {expert: cost / top for expert, cost in self._costs.items()}
        self._shares = shares
        self._general = general_expert
        self._budget = budget
        self._assignment = lru_cache(maxsize=64)(self._solve)

    def utility(self, category: str, expert: str, cost_weight: float) -> float:
        return self._scores.get(category, {}).get(expert, float("-inf")) - cost_weight * self._cost_norm[expert]

    def _solve(self, cost_weight: float) -> Assignment:
        utility = {c: {m: self.utility(c, m, cost_weight) for m in self._experts} for c in self._scores}
        finite = {c: {m: u for m, u in row.items() if np.isfinite(u)} for c, row in utility.items()}
        return solve_assignment(finite, self._shares, self._costs, self._budget or 0.0, self._general)

    def crossings(self) -> list[float]:
        """Every λ > 0 at which two experts swap places for some category."""
        points = set()
        for row in self._scores.values():
            for first in self._experts:
                for second in self._experts:
                    gap = self._cost_norm[first] - self._cost_norm[second]
                    if first < second and gap and first in row and second in row:
                        weight = (row[first] - row[second]) / gap
                        if weight > 0:
                            points.add(round(weight, 9))
        return sorted(points)

    def rank(self, category: str, cost_weight: float) -> tuple[RankedExpert, ...]:
        candidates = self._experts
        first: str | None = None
        if self._budget is not None:
            assignment = self._assignment(round(cost_weight, 6))
            candidates = sorted(assignment.deployed)
            first = assignment.expert_for.get(category)
        scored = [(expert, self.utility(category, expert, cost_weight)) for expert in candidates]
        scored = [(expert, value) for expert, value in scored if np.isfinite(value)]
        scored.sort(key=lambda item: (item[0] != first, -item[1], item[0]))
        return tuple(RankedExpert(expert=expert, score=round(value, 6)) for expert, value in scored)
