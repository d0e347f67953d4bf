"""DriftMoE: learning, the correctness mask, top-k training, negative feedback, router state, drift."""

from __future__ import annotations

import logging
import pickle
import random

import numpy as np
import pytest
import torch
from river.datasets import synth
from safetensors.torch import load_file, save_file

from services.learner.config import DriftMoESettings
from services.learner.driftmoe import DriftMoE, correctness_mask
from services.learner.river_adapter import DriftMoEClassifier


def threshold_stream(n: int, seed: int, flipped: bool = False) -> list[tuple[np.ndarray, str]]:
    """x uniform in [0, 1]^2, y = "high" when x0 > 0.5 (the other way round when ``flipped``)."""
    rng = np.random.default_rng(seed)
    events = []
    for _ in range(n):
        x = rng.uniform(size=2)
        high = bool(x[0] > 0.5) != flipped
        events.append((x, "high" if high else "low"))
    return events


def test_learns_sea_well_above_chance() -> None:
    model = DriftMoEClassifier(DriftMoESettings(seed=1))
    correct = 0
    for x, y in synth.SEA(variant=0, noise=0.0, seed=7).take(3000):
        correct += model.predict_one(x) == y
        model.learn_one(x, y)
    assert correct / 3000 > 0.8


def test_mask_marks_every_correct_tree() -> None:
    mask = correctness_mask(["a", "b", "a", "c"], [0.9, 0.1, 0.6, 0.2], "a")
    assert mask.tolist() == [1.0, 0.0, 1.0, 0.0]


def test_mask_falls_back_to_the_tree_closest_to_the_label() -> None:
    mask = correctness_mask(["a", "b", "a", "b"], [0.1, 0.3, 0.2, 0.1], "c")
    assert mask.tolist() == [0.0, 1.0, 0.0, 0.0]


def test_learn_one_buffers_the_fallback_mask_when_no_tree_is_right() -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=4, top_k=1), classes=["a", "c"])
    x = np.array([0.5, 0.5])
    features = {0: 0.5, 1: 0.5}
    for index, member in enumerate(learner.trees):  # every tree says "a"; tree i gives "c" i/(5+i)
        for _ in range(5):
            member.learn_one(features, "a")
        for _ in range(index):
            member.learn_one(features, "c")
    assert learner.learn_one(x, "c") is False
    targets = learner._buffer[-1][1]  # (E,) the router's target for this event
    assert targets.tolist() == [0.0, 0.0, 0.0, 1.0]


def test_only_the_top_k_trees_learn_each_event() -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=12, top_k=3, batch_size=8))
    for x, y in threshold_stream(40, seed=3):
        top_k = set(np.argsort(-learner.router_weights(x), kind="stable")[:3].tolist())
        before = learner.tree_instances.copy()
        learner.learn_one(x, y)
        learned = set(np.flatnonzero(learner.tree_instances - before).tolist())
        assert learned == top_k
    assert learner.tree_instances.sum() == 3 * 40
    # The trees themselves agree: only trees that learned something predict anything.
    untouched = np.flatnonzero(learner.tree_instances == 0)
    assert all(learner.trees[index].predict_proba_one({0: 0.3, 1: 0.3}) == {} for index in untouched)


def test_negative_feedback_trains_the_router_but_not_the_trees() -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=6, top_k=2, batch_size=16, seed=5), classes=["high", "low"])
    for x, y in threshold_stream(200, seed=4):
        learner.learn_one(x, y)
    x = np.array([0.9, 0.2])
    served = learner.predict_one(x)
    trees_before = pickle.dumps(learner.trees)
    instances_before = learner.tree_instances.copy()
    router_before = learner.router_state()
    predicted_served = [index for index, member in enumerate(learner.trees) if member.predict_one({0: 0.9, 1: 0.2}) == served]
    weight_before = learner.router_weights(x)[predicted_served].sum()

    for _ in range(16 * 5):  # five router steps
        assert learner.learn_negative(x, served) is True

    router_after = learner.router_state()
    assert any(not torch.equal(router_before[name], router_after[name]) for name in router_before)
    assert pickle.dumps(learner.trees) == trees_before
    assert np.array_equal(learner.tree_instances, instances_before)
    assert learner.router_weights(x)[predicted_served].sum() < weight_before


def test_negative_feedback_for_a_label_no_tree_predicts_changes_nothing() -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=4, top_k=2, batch_size=4), classes=["high", "low", "never"])
    for x, y in threshold_stream(50, seed=6):
        learner.learn_one(x, y)
    router_before = learner.router_state()
    steps_before = learner.router_steps
    for _ in range(8):
        assert learner.learn_negative(np.array([0.9, 0.2]), "never") is False
    assert learner.router_steps == steps_before
    assert all(torch.equal(router_before[name], tensor) for name, tensor in learner.router_state().items())


def test_router_weights_round_trip_through_safetensors(tmp_path) -> None:
    trained = DriftMoE(2, DriftMoESettings(batch_size=8, seed=1))
    for x, y in threshold_stream(64, seed=8):
        trained.learn_one(x, y)
    save_file(trained.router_state(), tmp_path / "router.safetensors")

    restored = DriftMoE(2, DriftMoESettings(batch_size=8, seed=2))
    probe = np.array([0.7, 0.1])
    assert not np.allclose(restored.router_weights(probe), trained.router_weights(probe))
    restored.load_router_state(load_file(tmp_path / "router.safetensors"))
    assert np.allclose(restored.router_weights(probe), trained.router_weights(probe))


def test_router_state_of_another_shape_is_refused() -> None:
    state = DriftMoE(3, DriftMoESettings(n_trees=4, top_k=2)).router_state()
    with pytest.raises(ValueError, match="another n_features or n_trees"):
        DriftMoE(2, DriftMoESettings(n_trees=4, top_k=2)).load_router_state(state)


def test_adwin_detects_a_label_flip_and_resets_a_tree(caplog: pytest.LogCaptureFixture) -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=6, top_k=2, batch_size=32, use_adwin=True, seed=3))
    for x, y in threshold_stream(1500, seed=9):
        learner.learn_one(x, y)
    assert learner.drifts_detected == 0
    with caplog.at_level(logging.WARNING, logger="services.learner.driftmoe"):
        for x, y in threshold_stream(600, seed=10, flipped=True):
            learner.learn_one(x, y)
    assert learner.drifts_detected >= 1
    assert learner.tree_resets == learner.drifts_detected
    assert "drift detected" in caplog.text


def test_a_falling_error_is_not_a_drift() -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=4, top_k=2, batch_size=32, use_adwin=True, seed=3))
    rng = np.random.default_rng(1)
    for x, _ in threshold_stream(400, seed=12):  # coin-flip labels: error about 0.5
        learner.learn_one(x, "high" if rng.random() < 0.5 else "low")
    for x, y in threshold_stream(1000, seed=13):  # a learnable concept: the error falls
        learner.learn_one(x, y)
    assert learner.error_drops_seen >= 1
    assert learner.drifts_detected == 0 and learner.tree_resets == 0


def test_reset_tree_empties_only_that_tree() -> None:
    learner = DriftMoE(2, DriftMoESettings(n_trees=3, top_k=3))
    for x, y in threshold_stream(20, seed=11):
        learner.learn_one(x, y)
    learner.reset_tree(1)
    assert learner.trees[1].predict_proba_one({0: 0.2, 1: 0.2}) == {}
    assert learner.tree_instances.tolist() == [20, 0, 20]
    with pytest.raises(ValueError, match="out of range"):
        learner.reset_tree(3)


def test_fixed_classes_refuse_an_unknown_label() -> None:
    learner = DriftMoE(2, classes=["high", "low"])
    with pytest.raises(ValueError, match="not one of the learner's classes"):
        learner.learn_one(np.array([0.1, 0.2]), "medium")


def test_top_k_above_n_trees_is_refused() -> None:
    with pytest.raises(ValueError, match="top_k"):
        DriftMoESettings(n_trees=2, top_k=3)


def test_river_adapter_reads_dicts_in_a_fixed_key_order() -> None:
    model = DriftMoEClassifier(DriftMoESettings(n_trees=2, top_k=1), features=["b", "a"])
    rng = random.Random(0)
    for _ in range(30):
        a, b = rng.random(), rng.random()
        model.learn_one({"a": a, "b": b}, a > 0.5)
    assert model.learner is not None and model.learner.n_features == 2
    assert model._vector({"a": 1.0, "b": 2.0}).tolist() == [2.0, 1.0]
    assert model._vector({"a": 1.0}).tolist() == [0.0, 1.0]


# --- the stream settings beyond the paper (docs/learner.md) ----------------------------------

STREAM_SETTINGS = DriftMoESettings(
    n_trees=6, top_k=2, batch_size=32, split_confidence=0.01, tree_poisson_lambda=6.0, tree_drift_delta=0.001,
    prediction="topk", seed=4,
)


def prequential(learner: DriftMoE, events: list[tuple[np.ndarray, str]]) -> float:
    return sum(learner.learn_one(x, y) for x, y in events) / len(events)


def test_per_tree_detectors_reset_the_trees_a_flip_made_wrong_and_the_learner_recovers() -> None:
    paper = DriftMoE(2, STREAM_SETTINGS.model_copy(update={"tree_drift_delta": None}))
    detecting = DriftMoE(2, STREAM_SETTINGS)
    for learner in (paper, detecting):
        prequential(learner, threshold_stream(4000, seed=20))
    assert detecting.tree_resets == 0, "no reset while the concept holds"
    flipped = threshold_stream(500, seed=21, flipped=True)
    after = {name: prequential(learner, flipped) for name, learner in (("paper", paper), ("detecting", detecting))}
    assert detecting.tree_resets >= 1 and paper.tree_resets == 0
    # Leaves that counted 4,000 events of the old concept outvote the new one for a while; a reset tree does not.
    assert after["detecting"] > after["paper"] + 0.03, f"forgetting the old concept is what recovers sooner: {after}"


def test_poisson_weights_skip_some_events_and_grow_trees_that_differ() -> None:
    # λ = 1 here, so that a weight of 0 (an event the tree does not learn) is common: e^-1 of the draws.
    learner = DriftMoE(2, STREAM_SETTINGS.model_copy(update={"tree_drift_delta": None, "top_k": 6, "tree_poisson_lambda": 1.0}))
    prequential(learner, threshold_stream(300, seed=22))
    assert 120 < learner.tree_instances.min() and learner.tree_instances.max() < 240, learner.tree_instances
    probe = {0: 0.52, 1: 0.5}
    assert len({str(member.predict_proba_one(probe)) for member in learner.trees}) > 1, "bagged trees differ"


def test_the_top_k_vote_is_a_distribution_whose_argmax_is_served() -> None:
    learner = DriftMoE(2, STREAM_SETTINGS, classes=["high", "low"])
    prequential(learner, threshold_stream(400, seed=23))
    for x, _ in threshold_stream(20, seed=24):
        probas = learner.predict_proba_one(x)
        assert sum(probas.values()) == pytest.approx(1.0)
        assert learner.predict_one(x) == max(probas, key=probas.__getitem__)


def test_per_tree_detectors_survive_a_checkpoint() -> None:
    learner = DriftMoE(2, STREAM_SETTINGS)
    prequential(learner, threshold_stream(200, seed=25))
    parts = pickle.loads(pickle.dumps(learner.river_parts()))
    restored = DriftMoE.restore(2, STREAM_SETTINGS, learner.tensors(), parts, learner.plain_state())
    assert restored.tree_detectors is not None
    assert [d.n_detections for d in restored.tree_detectors] == [d.n_detections for d in learner.tree_detectors]
    assert [d.width for d in restored.tree_detectors] == [d.width for d in learner.tree_detectors]
