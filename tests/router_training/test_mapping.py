"""The mapping's decisions: a specialist needs evidence beyond its interval, and a router that
routes held-out verifiable prompts worse does not replace the current one unless forced.

The guard is exercised with the session's trained router, through the serving code's routing
and a real router store; the check results of each expert's held-out answers are set here, so
that which version is worse is known.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_training.mapping.evidence import category_evidence, conservative_table
from router_training.mapping.job import MappingResult, publish_mapping
from router_training.verifiable.tasks import read_tasks
from services.config import AppConfig
from services.router.assignment import Assignment, solve_assignment
from services.router.store import RouterStore

GENERAL, SPECIALIST = "smollm2", "smollm2-math"
COSTS = {GENERAL: 1.0, SPECIALIST: 1.0}


def assigned(quality: dict[str, list[float]]) -> str:
    evidence = {"math": category_evidence(quality, GENERAL, "check")}
    table = conservative_table(evidence, GENERAL)
    return solve_assignment(table, {"math": 1.0}, COSTS, budget=2.0, general_expert=GENERAL).expert_for["math"]


def test_a_specialist_better_by_a_wide_margin_is_chosen() -> None:
    general = [1.0, 0.0] * 16  # half right
    specialist = [1.0] * 32  # always right
    assert assigned({GENERAL: general, SPECIALIST: specialist}) == SPECIALIST


def test_a_specialist_better_within_the_interval_is_not_chosen() -> None:
    general = [1.0, 0.0] * 16
    specialist = list(general)
    specialist[1] = specialist[3] = 1.0  # right on two more prompts of 32: a higher mean, inside the noise
    evidence = category_evidence({GENERAL: general, SPECIALIST: specialist}, GENERAL, "check")
    assert np.mean(specialist) > np.mean(general)
    assert evidence.advantage[SPECIALIST].low <= 0 < evidence.advantage[SPECIALIST].high
    raw_means = {"math": {GENERAL: float(np.mean(general)), SPECIALIST: float(np.mean(specialist))}}
    assert solve_assignment(raw_means, {"math": 1.0}, COSTS, 2.0, GENERAL).expert_for["math"] == SPECIALIST, (
        "on the means alone the specialist would win"
    )
    assert assigned({GENERAL: general, SPECIALIST: specialist}) == GENERAL


def test_few_prompts_are_no_evidence() -> None:
    assert assigned({GENERAL: [0.0], SPECIALIST: [1.0]}) == GENERAL


@pytest.fixture()
def own_store(app_config: AppConfig, trained_router: Any, tmp_path: Path) -> tuple[AppConfig, RouterStore]:
    """A store of this test's own holding the session's trained router (as current)."""
    assert app_config.router is not None
    store = RouterStore(tmp_path / "routers")
    store.root.mkdir()
    shutil.copytree(trained_router.folder, store.folder(trained_router.version))
    store.use(trained_router.version)
    config = app_config.model_copy(update={"router": app_config.router.model_copy(update={"store": str(store.root)})})
    return config, store


def a_mapping_that_sends_math_to(expert: str, experts: list[str]) -> MappingResult:
    """Scores as the mapping would publish them, with ``expert`` clearly best at math and the general one elsewhere."""
    scores = {category: {name: 0.5 if name == GENERAL else 0.2 for name in experts} for category in
              ("writing", "roleplay", "reasoning", "math", "coding", "extraction", "stem", "humanities")}
    scores["math"] = {name: 0.9 if name == expert else 0.1 for name in experts}
    return MappingResult(scores=scores, evidence={}, assignment=Assignment({}, frozenset()), quality={}, rewards={})


def test_the_activation_guard_keeps_the_current_router_when_the_new_one_routes_worse(
    own_store: tuple[AppConfig, RouterStore],
) -> None:
    config, store = own_store
    experts = [expert.name for expert in config.experts if expert.name in (GENERAL, SPECIALIST, "smollm2-code")]
    config = config.model_copy(update={"experts": [config.expert(name) for name in experts]})
    current = store.load_current()
    assert current.manifest.scores["math"][SPECIALIST] > current.manifest.scores["math"][GENERAL], "the current router sends math to the math expert"
    heldout = [task for task in read_tasks(split="heldout") if task.category == "math"][:24]
    checks = {name: [1.0 if name == SPECIALIST else 0.0] * len(heldout) for name in experts}  # only the math expert gets them right

    worse = publish_mapping(
        config, store, current, a_mapping_that_sends_math_to(GENERAL, experts), reward_model_version=None, current=current,
        heldout=heldout, heldout_checks=checks, activate=True, force_activate=False,
    )
    assert worse.end_to_end is not None and worse.end_to_end.worse_than_current
    assert worse.end_to_end.new.mean < worse.end_to_end.current.mean  # type: ignore[union-attr]
    assert not worse.activated and "not made current" in worse.activation
    assert store.current_version() == current.version, "serving keeps the router that routes better"
    assert worse.artifact is not None and store.folder(worse.artifact.version).is_dir(), "the new version is published all the same"

    forced = publish_mapping(
        config, store, current, a_mapping_that_sends_math_to(GENERAL, experts), reward_model_version=None, current=current,
        heldout=heldout, heldout_checks=checks, activate=True, force_activate=True,
    )
    assert forced.activated and "--force-activate" in forced.activation
    assert forced.artifact is not None and store.current_version() == forced.artifact.version

    better = publish_mapping(
        config, store, store.load_current(), a_mapping_that_sends_math_to(SPECIALIST, experts), reward_model_version=None,
        current=store.load_current(), heldout=heldout, heldout_checks=checks, activate=True, force_activate=False,
    )
    assert better.activated and better.artifact is not None and store.current_version() == better.artifact.version
