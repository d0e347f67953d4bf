"""The router as ``coe train router`` publishes it, judged on the test split and the external set."""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from router_training.router.train import more_often_wrong_below


def test_test_split_and_external_set_are_reported_side_by_side(router_training_run: dict[str, Any]) -> None:
    evaluation = router_training_run["evaluation"]
    written = json.loads((router_training_run["report_dir"] / "router_evaluation.json").read_text())
    assert written["router_version"] == router_training_run["artifact"].version
    assert written["external"] == json.loads(json.dumps(evaluation["external"]))
    external = evaluation["external"]
    assert set(external["per_kind"]) == {"open_ended", "math_word_problem", "code_writing", "chit_chat"}
    assert external["prompts"] >= 380 and evaluation["test"]["prompts"] >= 400
    assert set(evaluation["goals"]) == set(external["per_kind"])
    assert evaluation["gap"]["accuracy"] == round(evaluation["test"]["in_scope"]["accuracy"] - external["in_scope"]["accuracy"], 4)


def test_code_and_math_reach_their_experts_and_chit_chat_falls_back(router_training_run: dict[str, Any]) -> None:
    """Even after only a few fine-tuning steps (the suite's router), what users feel holds."""
    kinds = router_training_run["evaluation"]["external"]["per_kind"]
    assert kinds["code_writing"]["expert_choice"] >= 0.9, kinds["code_writing"]
    assert kinds["math_word_problem"]["expert_choice"] >= 0.9, kinds["math_word_problem"]
    assert kinds["chit_chat"]["fallback_rate"] >= 0.85, kinds["chit_chat"]
    assert kinds["chit_chat"]["out_of_distribution_rate"] >= 0.8, kinds["chit_chat"]
    assert kinds["open_ended"]["accuracy"] >= 0.8, kinds["open_ended"]


def test_reusing_the_training_embeddings_gives_the_same_figures(static_router: Any) -> None:
    """``coe train router`` evaluates the test split on the embeddings the fit already made."""
    from router_training.router.data import DATA_DIR, read_examples
    from router_training.router.evaluate import evaluate_router

    examples = read_examples(DATA_DIR / "test.jsonl", static_router.artifact.manifest.taxonomy)[:96]
    embeddings = static_router.embedder.encode([static_router.prepare(example.messages).text for example in examples])
    assert evaluate_router(static_router, examples, embeddings=embeddings) == evaluate_router(static_router, examples)


def test_the_right_expert_follows_the_routers_own_score_table(static_router: Any) -> None:
    assert static_router.expert_for("coding") == "smollm2-code"
    assert static_router.expert_for("math") == "smollm2-math"
    assert {static_router.expert_for(category) for category in ("writing", "humanities", "extraction")} == {"smollm2"}


def test_tau_falls_back_only_where_the_router_is_more_often_wrong_than_right() -> None:
    confidence = np.array([0.30, 0.35, 0.40, 0.55, 0.90, 0.95])
    assert more_often_wrong_below(confidence, np.array([0, 0, 1, 1, 1, 1], bool)) == 0.40
    assert more_often_wrong_below(confidence, np.ones(6, bool)) == 0.0  # nothing to gain: no fallback
    # Falling back below 0.55 or below 0.90 gains the same; the fewer fallbacks win.
    assert more_often_wrong_below(confidence, np.array([0, 0, 0, 1, 0, 1], bool)) == 0.55
    assert more_often_wrong_below(confidence, np.array([0, 0, 0, 0, 1, 1], bool)) == 0.90
