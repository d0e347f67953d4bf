"""The contextual-bandit policy: what it learns from, and its signed checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.learner.checkpoint import STATE_NAME, LearnerSnapshot, load_snapshot, save_snapshot
from services.learner.config import LinUCBSettings
from services.learner.linucb import LinUCBRouter

KEY = b"k" * 32
EXPERTS = ("general", "math", "code")
MATH, CODE = np.array([1.0, 0.0, 0.2]), np.array([0.0, 1.0, 0.2])  # stage-1 probabilities, roughly


def taught(settings: LinUCBSettings = LinUCBSettings(reward_noise=0.1)) -> LinUCBRouter:
    router = LinUCBRouter(3, settings, classes=EXPERTS)
    rng = np.random.default_rng(0)
    for _ in range(40):
        # A shadow event scores three experts. The reward model scores math prompts higher for
        # every expert: only the differences between them teach.
        noise = rng.normal(0, 0.05, size=6)
        router.learn_rewards(MATH, {"general": 2.4 + noise[0], "math": 3.0 + noise[1], "code": 2.2 + noise[2]})
        router.learn_rewards(CODE, {"general": -0.5 + noise[3], "math": -0.6 + noise[4], "code": 0.2 + noise[5]})
    return router


def test_each_kind_of_request_goes_to_the_expert_that_answered_it_best() -> None:
    router = taught()
    assert (router.predict_one(MATH), router.predict_one(CODE)) == ("math", "code")
    for _ in range(30):  # the math expert breaks: thumbs-down on it
        router.learn_negative(MATH, "math")
    assert router.predict_one(MATH) != "math", "forgetting and negative feedback move math requests elsewhere"
    with pytest.raises(ValueError, match="not one of the bandit's experts"):
        router.learn_one(MATH, "unknown-expert")


def test_a_bandit_checkpoint_loads_back_to_the_same_choices(tmp_path: Path) -> None:
    router = taught()
    save_snapshot(tmp_path / "snapshot", LearnerSnapshot(model=router, state={"note": "kept"}), KEY, kind="learner", name="test")
    assert json.loads((tmp_path / "snapshot" / STATE_NAME).read_text())["policy"] == "linucb"

    loaded = load_snapshot(tmp_path / "snapshot", KEY)
    assert isinstance(loaded.model, LinUCBRouter) and loaded.state == {"note": "kept"}
    assert loaded.model.settings == router.settings and loaded.model.updates == router.updates == 80
    contexts = [MATH, CODE, (MATH + CODE) / 2]
    assert [loaded.model.predict_one(x) for x in contexts] == [router.predict_one(x) for x in contexts]


def test_the_bandit_learns_for_as_long_as_the_service_runs() -> None:
    """Routing features always hold a direction that never varies: a confident stage 1's
    probabilities are one-hot and sum to one, as the bias does. River's forgetting wore the prior
    away along it until the precision matrix could not be inverted (LinAlgError: Singular matrix,
    after 6,626 outcomes here and about 9,000 events in the routing simulation), which would have
    stopped the learner. This bandit takes 10,000 outcomes and still routes by what it learnt."""
    categories, projection = 8, 16
    router = LinUCBRouter(projection + categories, LinUCBSettings(), classes=EXPERTS)
    rng = np.random.default_rng(0)

    def request(category: int) -> np.ndarray:
        return np.concatenate((rng.normal(size=projection), np.eye(categories)[category]))

    for _ in range(10_000):
        category = int(rng.integers(categories))
        features = request(category)
        router.learn_rewards(features, {"general": rng.normal(0, 0.3), "math": float(category == 1) + rng.normal(0, 0.3),
                                        "code": float(category == 2) + rng.normal(0, 0.3)})
    assert [router.predict_one(request(category)) for category in (1, 2)] == ["math", "code"]
    assert all(np.linalg.eigvalsh(arm.precision).min() >= 0.99 * arm.alpha for arm in router._arms.values()), (
        "forgetting keeps the prior's precision in every direction")


def test_a_checkpoint_of_the_river_bandit_it_replaced_keeps_what_it_learnt() -> None:
    """Checkpoints written while the policy was river's LinUCBDisjoint load into this one."""
    from river import bandit

    settings = LinUCBSettings(reward_noise=0.1)
    old = bandit.LinUCBDisjoint(alpha=settings.prior_precision, beta=1 / settings.reward_noise**2, smoothing=settings.forgetting)
    rng = np.random.default_rng(0)
    for _ in range(40):
        for x, rewards in ((MATH, {"general": 0.0, "math": 0.6, "code": -0.4}), (CODE, {"general": -0.2, "math": -0.3, "code": 0.5})):
            context = {"bias": 1.0, **{f"x{index}": float(value) for index, value in enumerate(x)}}
            for expert, reward in rewards.items():
                old.update(expert, context, reward + rng.normal(0, 0.05))
    restored = LinUCBRouter.restore(3, settings, {}, {"policy": old}, {"classes": list(EXPERTS), "updates": 80})
    assert (restored.predict_one(MATH), restored.predict_one(CODE)) == ("math", "code") and restored.updates == 80
