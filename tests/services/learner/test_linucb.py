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
