"""Routing drift simulation: does the online learner notice that an LLM expert got better?

Three LLM experts, eight request categories and a ground-truth quality table. A request's
embedding is its category's centroid in d = 16 plus Gaussian noise; the stage-1 classifier's
category probabilities are the posterior of those Gaussians. The learners see both, as the
serving learner does (``services/learner/features.py``: a projection of the embedding, then the
stage-1 probabilities). At event T the best expert of two categories changes.

- The **static router** takes the most probable category (the nearest centroid, as a trained
  stage-1 classifier would) and looks the expert up in the table it was built with; it never learns.
- The **online learner** (DriftMoE with the serving learner's settings, ``routing_driftmoe_defaults``) serves its own prediction and learns from the
  labels a shadow evaluation gives: the served expert and one other are answered and scored
  with a noisy reward (the true quality plus Gaussian noise), and the higher one is the label.
- The **contextual bandit** (the serving learner's ``learner.policy: linucb``: river's
  ``LinUCBDisjoint``, one Bayesian linear regression per expert over the routing features, with
  exponential forgetting) serves the expert with the highest upper confidence bound and learns
  both scored rewards of the same shadow evaluation, centred on their mean: the same information
  the online learner gets, as a reward per expert instead of a winner.

**Feedback** (:class:`Feedback`) can be realistic: a share of outcomes flipped (a rater who picks
the worse answer), feedback on only a share of requests, or feedback that arrives a number of
events late. Both policies get exactly the same outcomes at the same events.

Regret at event t is the share of the last ``window`` events whose chosen expert was not the
true best at that time.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from tqdm.auto import tqdm

from services.learner.config import LinUCBSettings, routing_driftmoe_defaults
from services.learner.driftmoe import DriftMoE
from services.learner.linucb import LinUCBRouter

EXPERTS = ("expert-a", "expert-b", "expert-c")
N_CATEGORIES = 8
N_FEATURES = 16  # the projected embedding; the learner's input adds one stage-1 probability per category
LEARNER_FEATURES = N_FEATURES + N_CATEGORIES
FEATURE_NOISE = 0.4  # per dimension, around unit-scale centroids
REWARD_NOISE = 0.1
DRIFTING_CATEGORIES = (0, 1)
# LinUCB's smoothing (exponential forgetting): without it the bandit needed 1,506 events to recover
# from the drift; 0.99 recovers faster (279 events) at a little more regret before it (0.13 vs 0.12).
BANDIT_FORGETTING = 0.995


@dataclass(frozen=True)
class Feedback:
    """How shadow-evaluation outcomes reach the learner."""

    label_noise: float = 0.0  # share of outcomes whose winner and loser are swapped
    share: float = 1.0  # share of requests that get an outcome at all
    delay: int = 0  # events between a request and its outcome reaching the learner


FEEDBACK_MODES = {
    "clean": Feedback(),
    "noisy_10pct": Feedback(label_noise=0.10),
    "sparse_5pct": Feedback(share=0.05),
    "delayed_200": Feedback(delay=200),
}


class RoutingPolicy(Protocol):
    name: str
    drifts_detected: int

    def choose(self, x: np.ndarray) -> int: ...

    def learn(self, x: np.ndarray, experts: tuple[int, int], rewards: tuple[float, float]) -> None: ...


class DriftMoEPolicy:
    """The serving learner: a classifier of the best expert, taught the winner of each comparison."""

    name = "driftmoe"

    def __init__(self, seed: int) -> None:
        self._learner = DriftMoE(LEARNER_FEATURES, routing_driftmoe_defaults().model_copy(update={"seed": seed}), classes=EXPERTS)

    @property
    def drifts_detected(self) -> int:
        return self._learner.drifts_detected

    def choose(self, x: np.ndarray) -> int:
        return EXPERTS.index(self._learner.predict_one(x))

    def learn(self, x: np.ndarray, experts: tuple[int, int], rewards: tuple[float, float]) -> None:
        self._learner.learn_one(x, EXPERTS[experts[int(np.argmax(rewards))]])


class LinUCBPolicy:
    """The serving learner's bandit (``learner.policy: linucb``), taught each scored expert's reward.

    The reward noise is the simulation's own: with river's default precision (a noise of std 1
    against rewards 0.35-0.85) the forgetting left the regressions close to their prior.
    """

    name = "bandit"
    drifts_detected = 0

    def __init__(self, seed: int) -> None:
        settings = LinUCBSettings(reward_noise=REWARD_NOISE, forgetting=BANDIT_FORGETTING, seed=seed)
        self._router = LinUCBRouter(LEARNER_FEATURES, settings, classes=EXPERTS)

    def choose(self, x: np.ndarray) -> int:
        return EXPERTS.index(self._router.predict_one(x))

    def learn(self, x: np.ndarray, experts: tuple[int, int], rewards: tuple[float, float]) -> None:
        self._router.learn_rewards(x, {EXPERTS[expert]: reward for expert, reward in zip(experts, rewards)})


POLICIES = {"driftmoe": DriftMoEPolicy, "bandit": LinUCBPolicy}


@dataclass
class RoutingSimResult:
    drift_at: int
    n_events: int
    window: int
    recovery_threshold: float
    recovery_events: int | None
    sustained_recovery_events: int | None  # events after T from which the regret stays <= threshold to the end
    static_regret: float  # over the last `window` events
    online_regret: float
    pre_drift_regret: float  # the online policy's, over the `window` events before T
    static_regret_series: list[float] = field(repr=False)  # rolling regret at events window..n_events
    online_regret_series: list[float] = field(repr=False)
    drifts_detected: int = 0
    policy: str = "driftmoe"
    feedback: Feedback = Feedback()

    def figures(self) -> dict[str, Any]:
        """The figures of one run, for drift.json."""
        return {
            "recovery_events": self.recovery_events, "sustained_recovery_events": self.sustained_recovery_events,
            "pre_drift_regret": self.pre_drift_regret, "final_regret": self.online_regret,
        }

    def series(self, every: int = 10) -> dict[str, Any]:
        """The regret curves, one point every ``every`` events, for drift_series.json."""
        events = list(range(self.window, self.n_events + 1, every))
        return {
            "drift_at": self.drift_at,
            "window": self.window,
            "event": events,
            "static_regret": [self.static_regret_series[event - self.window] for event in events],
            "online_regret": [self.online_regret_series[event - self.window] for event in events],
            "recovery_events": self.recovery_events,
            "sustained_recovery_events": self.sustained_recovery_events,
            "drifts_detected": self.drifts_detected,
        }


def quality_tables(rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Quality of each expert per category, before and after the drift, shape (categories, experts)."""
    before = rng.uniform(0.35, 0.55, size=(N_CATEGORIES, len(EXPERTS)))
    for category in range(N_CATEGORIES):
        before[category, category % len(EXPERTS)] = 0.8
    after = before.copy()
    for category in DRIFTING_CATEGORIES:
        old_best = category % len(EXPERTS)
        new_best = (old_best + 1) % len(EXPERTS)
        after[category, new_best], after[category, old_best] = 0.85, 0.5
    return before, after


def stage1_probabilities(centroids: np.ndarray, embedding: np.ndarray) -> np.ndarray:
    """The stage-1 classifier's category probabilities: the posterior of the Gaussian around each centroid."""
    logits = -np.sum((centroids - embedding) ** 2, axis=1) / (2 * FEATURE_NOISE**2)
    weights = np.exp(logits - logits.max())
    return weights / weights.sum()


def rolling_mean(misses: np.ndarray, window: int) -> np.ndarray:
    """Mean of every full window: element i covers events i .. i + window - 1."""
    sums = np.cumsum(np.concatenate([[0.0], misses]))
    return (sums[window:] - sums[:-window]) / window


def recovery(online_misses: np.ndarray, drift_at: int, window: int, threshold: float, sustained: bool = False) -> int | None:
    """Events after T until the regret over ``window`` events, all after T, is at most ``threshold``.

    ``sustained``: until it is at most ``threshold`` and stays there to the end of the run; the
    first dip can be luck, a window of 100 events is noisy.
    """
    after = rolling_mean(online_misses[drift_at:], window) <= threshold + 1e-12  # after[i] ends at event drift_at + i + window
    if sustained:
        above = np.flatnonzero(~after)
        first = 0 if above.size == 0 else int(above[-1]) + 1
        return first + window if first < after.size else None
    hits = np.flatnonzero(after)
    return int(hits[0] + window) if hits.size else None


def run_routing_sim(
    quick: bool, seed: int = 42, window: int = 100, threshold: float = 0.10, bar_position: int | None = None,
    policy: str = "driftmoe", feedback: Feedback = Feedback(),
) -> RoutingSimResult:
    n_events, drift_at = (8_000, 3_000) if quick else (20_000, 8_000)
    rng = np.random.default_rng(seed)
    before, after = quality_tables(rng)
    centroids = rng.normal(size=(N_CATEGORIES, N_FEATURES))
    centroids /= np.linalg.norm(centroids, axis=1, keepdims=True) / 2.0  # norm 2: categories are separable
    static_table = before.argmax(axis=1)  # (categories,) the expert the static router picks
    learner: RoutingPolicy = POLICIES[policy](seed)
    # Outcomes come from a stream of their own, so every policy and feedback mode sees the same
    # requests, and the same outcome decisions for the same events.
    outcomes = np.random.default_rng(seed + 1)
    pending: deque[tuple[int, np.ndarray, tuple[int, int], tuple[float, float]]] = deque()
    static_misses = np.zeros(n_events)
    online_misses = np.zeros(n_events)
    for event in tqdm(range(n_events), desc=f"routing sim ({policy})", mininterval=0.5, leave=False, position=bar_position):
        while pending and pending[0][0] <= event:
            _, x_then, experts_then, rewards_then = pending.popleft()
            learner.learn(x_then, experts_then, rewards_then)
        quality = before if event < drift_at else after
        category = int(rng.integers(N_CATEGORIES))
        embedding = centroids[category] + rng.normal(scale=FEATURE_NOISE, size=N_FEATURES)
        probabilities = stage1_probabilities(centroids, embedding)
        x = np.concatenate([embedding, probabilities])
        best = int(quality[category].argmax())
        static_choice = int(static_table[probabilities.argmax()])
        served = learner.choose(x)
        other = int(rng.choice([index for index in range(len(EXPERTS)) if index != served]))
        rewards = quality[category, [served, other]] + rng.normal(scale=REWARD_NOISE, size=2)
        gets_feedback, flipped = outcomes.random() < feedback.share, outcomes.random() < feedback.label_noise
        if gets_feedback:
            scored = (float(rewards[1]), float(rewards[0])) if flipped else (float(rewards[0]), float(rewards[1]))
            pending.append((event + feedback.delay, x, (served, other), scored))
        static_misses[event] = static_choice != best
        online_misses[event] = served != best
    static_series = rolling_mean(static_misses, window)
    online_series = rolling_mean(online_misses, window)
    return RoutingSimResult(
        drift_at=drift_at,
        n_events=n_events,
        window=window,
        recovery_threshold=threshold,
        recovery_events=recovery(online_misses, drift_at, window, threshold),
        sustained_recovery_events=recovery(online_misses, drift_at, window, threshold, sustained=True),
        static_regret=round(float(static_series[-1]), 4),
        online_regret=round(float(online_series[-1]), 4),
        pre_drift_regret=round(float(online_series[drift_at - window]), 4),
        static_regret_series=[round(float(value), 4) for value in static_series],
        online_regret_series=[round(float(value), 4) for value in online_series],
        drifts_detected=learner.drifts_detected,
        policy=policy,
        feedback=feedback,
    )


def plot_routing_sim(result: RoutingSimResult, path: Path, bandit: RoutingSimResult | None = None) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    events = np.arange(result.window, result.n_events + 1)
    figure, axes = plt.subplots(figsize=(9, 4))
    axes.plot(events, result.static_regret_series, label="static router", color="tab:gray")
    axes.plot(events, result.online_regret_series, label="online learner (DriftMoE)", color="tab:blue")
    if bandit is not None:
        axes.plot(events, bandit.online_regret_series, label="contextual bandit (LinUCB)", color="tab:orange", alpha=0.8)
    axes.axvline(result.drift_at, color="tab:red", linestyle="--", label=f"drift at T = {result.drift_at}")
    axes.axhline(result.recovery_threshold, color="tab:green", linestyle=":", label=f"regret {result.recovery_threshold:.2f}")
    if result.recovery_events is not None:
        axes.axvline(result.drift_at + result.recovery_events, color="tab:green", linewidth=0.8)
    axes.set_xlabel("event")
    axes.set_ylabel(f"regret over the last {result.window} events")
    axes.set_ylim(0, 1)
    axes.set_title("Routing drift: best expert of 2 of 8 categories changes at T")
    axes.legend(loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)
