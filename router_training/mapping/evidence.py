"""How sure the mapping is: bootstrap intervals, and a score table that needs evidence to move.

Every answer gets a quality in [0, 1]: its check's result where the category has one
(``router_training.verifiable``), elsewhere the reward model's Bradley–Terry probability that it
beats the general expert's answer to the same prompt (``σ(r − r_general)``; the general expert is
0.5 by definition). An expert's score is its mean quality over the category's prompts, with a
percentile bootstrap 95 % interval (``scipy.stats.bootstrap``).

The table that serving ranks by, and the CoE program maximises, is *conservative*: the general
expert keeps its mean; any other expert gets the general expert's mean plus the **lower** end of
the interval of its paired advantage (its quality minus the general expert's, prompt by prompt),
less a hair. So a specialist wins a category only when it is better by more than the
uncertainty — with eight prompts and a lucky draw it does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

LEVEL = 0.95  # the scores' intervals, two-sided
ADVANTAGE_LEVEL = 0.90  # two-sided, so its lower end is a one-sided 95 % bound
RESAMPLES = 2000
TIE_BREAK = 1e-6  # among equals, the general expert


@dataclass(frozen=True)
class Interval:
    mean: float
    low: float
    high: float

    def as_dict(self) -> dict[str, float]:
        return {key: round(value, 4) for key, value in asdict(self).items()}


def bootstrap_interval(
    values: Sequence[float], *, bounds: tuple[float, float], seed: int = 0, level: float = LEVEL
) -> Interval:
    """Mean and percentile-bootstrap interval; with fewer than two values the interval is ``bounds`` (no evidence)."""
    data = np.asarray(values, dtype=float)
    if data.size == 0:
        return Interval(float("nan"), *bounds)
    mean = float(data.mean())
    if data.size < 2:
        return Interval(mean, *bounds)
    if np.all(data == data[0]):
        return Interval(mean, mean, mean)  # every resample has this mean
    from scipy.stats import bootstrap

    result = bootstrap(
        (data,), np.mean, confidence_level=level, n_resamples=RESAMPLES, method="percentile",
        rng=np.random.default_rng(seed),
    )
    return Interval(mean, float(result.confidence_interval.low), float(result.confidence_interval.high))


@dataclass(frozen=True)
class CategoryEvidence:
    """One category: each expert's score and its advantage over the general expert, with intervals."""

    source: str  # "check" or "reward"
    prompts: int
    score: dict[str, Interval]
    advantage: dict[str, Interval]  # expert − general, paired by prompt; 90 % two-sided (low: one-sided 95 %)

    def conservative(self, general: str) -> dict[str, float]:
        base = self.score[general].mean
        return {
            expert: base if expert == general else base + self.advantage[expert].low - TIE_BREAK
            for expert in self.score
        }

    def as_dict(self) -> dict[str, object]:
        return {
            "source": self.source,
            "prompts": self.prompts,
            "score": {expert: interval.as_dict() for expert, interval in self.score.items()},
            "advantage_over_general": {expert: interval.as_dict() for expert, interval in self.advantage.items()},
        }


def category_evidence(quality: dict[str, Sequence[float]], general: str, source: str, seed: int = 0) -> CategoryEvidence:
    """``quality[expert]`` holds one value in [0, 1] per prompt, in the same prompt order for every expert."""
    base = np.asarray(quality[general], dtype=float)
    score = {expert: bootstrap_interval(values, bounds=(0.0, 1.0), seed=seed) for expert, values in quality.items()}
    advantage = {
        expert: bootstrap_interval(np.asarray(values, dtype=float) - base, bounds=(-1.0, 1.0), seed=seed, level=ADVANTAGE_LEVEL)
        for expert, values in quality.items()
    }
    return CategoryEvidence(source=source, prompts=len(base), score=score, advantage=advantage)


def conservative_table(evidence: dict[str, CategoryEvidence], general: str) -> dict[str, dict[str, float]]:
    return {category: item.conservative(general) for category, item in evidence.items()}
