"""Evaluate a published router the way it serves: category, fallback and, above all, expert.

Every prompt goes through :class:`services.router.pipeline.StaticRouter` (the serving code), so
the figures include the confidence and entropy fallbacks and the out-of-distribution check. For
each prompt the *right expert* is the one a confident decision for its true category gets (the
code expert for coding, the math expert for math, the general expert elsewhere, with the
router's own score table), and the general expert for ``out_of_scope`` prompts: that is what a
user feels, more than the category.

The test split and ``external.jsonl`` are reported side by side. The external set is written
apart from the seed data and never trained or tuned on, so a gap between the two says the router
has learnt the seed data's style rather than the task.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from router_training.router.data import EXTERNAL_FILE, Example, read_examples
from services.router.ood import REASON as OUT_OF_DISTRIBUTION
from services.router.decision import RouteDecision
from services.router.pipeline import EmbeddedTexts, StaticRouter

BATCH = 64
# What the external set must reach, per kind: (figure, goal).
GOALS = {
    "open_ended": ("accuracy", 0.85),
    "math_word_problem": ("accuracy", 0.98),
    "code_writing": ("accuracy", 0.98),
    "chit_chat": ("fallback_rate", 0.90),
}
GAP_GOAL = 0.03  # test-split and external accuracy within 3 points


def _share(hits: list[bool]) -> float | None:
    return sum(hits) / len(hits) if hits else None


def _summary(rows: list[dict[str, Any]]) -> dict[str, Any]:
    in_scope = [row for row in rows if row["in_scope"]]
    return {
        "prompts": len(rows),
        "accuracy": _share([row["category_right"] for row in in_scope]),
        "expert_choice": _share([row["expert_right"] for row in rows]),
        "fallback_rate": _share([row["fallback"] for row in rows]),
        "out_of_distribution_rate": _share([row["ood"] for row in rows]),
    }


def decide_examples(
    router: StaticRouter, examples: list[Example], label: str = "prompts", embeddings: np.ndarray | None = None
) -> list[RouteDecision]:
    """The serving decision for every example, in batches. ``embeddings``: the rows already
    embedded by this router's embedder (training has them), so they are not embedded twice."""
    decisions: list[RouteDecision] = []
    progress = tqdm(total=len(examples), desc=f"evaluating on {label}", unit="prompt")
    for start in range(0, len(examples), BATCH):
        chunk = examples[start : start + BATCH]
        queries = [router.prepare(example.messages) for example in chunk]
        if embeddings is None:
            decisions += router.decide(queries)
        else:
            texts = [query.text for query in queries]
            embedded = EmbeddedTexts(embeddings[start : start + len(chunk)], router.embedder.too_long(texts))
            decisions += router.decide_embedded(queries, embedded)
        progress.update(len(chunk))
    progress.close()
    return decisions


def right_expert(router: StaticRouter, example: Example) -> str:
    """The expert a confident decision for the example's true category gets; the general expert out of scope."""
    return router.expert_for(example.category) if example.in_scope else router.general_expert


def evaluate_router(
    router: StaticRouter, examples: list[Example], label: str = "prompts", embeddings: np.ndarray | None = None,
    decisions: list[RouteDecision] | None = None,
) -> dict[str, Any]:
    """Figures for ``examples`` overall, for in-scope and out-of-scope prompts, per category and
    per ``kind`` (when the rows name one); ``decisions`` when they are made already."""
    if decisions is None:
        decisions = decide_examples(router, examples, label, embeddings)
    rows: list[dict[str, Any]] = []
    for example, decision in zip(examples, decisions, strict=True):
        rows.append({
            "category": example.category,
            "kind": example.kind,
            "in_scope": example.in_scope,
            "category_right": decision.category == example.category,
            "expert_right": decision.expert == right_expert(router, example),
            "fallback": decision.uncertain,
            "ood": decision.reason == OUT_OF_DISTRIBUTION,
        })
    by_category: dict[str, list[dict[str, Any]]] = defaultdict(list)
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        by_category[row["category"]].append(row)
        if row["kind"]:
            by_kind[row["kind"]].append(row)
    result = _summary(rows)
    result["in_scope"] = _summary([row for row in rows if row["in_scope"]])
    result["out_of_scope"] = _summary([row for row in rows if not row["in_scope"]])
    result["per_category"] = {category: _summary(group) for category, group in sorted(by_category.items())}
    if by_kind:
        result["per_kind"] = {kind: _summary(group) for kind, group in sorted(by_kind.items())}
    return result


def read_external(taxonomy: tuple[str, ...], data_dir: Path = EXTERNAL_FILE.parent) -> list[Example] | None:
    """The external evaluation set beside the splits in ``data_dir``, or None when it has none."""
    path = data_dir / EXTERNAL_FILE.name
    return read_examples(path, taxonomy) if path.is_file() else None


def evaluate_splits(
    router: StaticRouter, test: list[Example], external: list[Example] | None, test_embeddings: np.ndarray | None = None
) -> dict[str, Any]:
    """The test split and the external set side by side, with the gap and the goals."""
    report: dict[str, Any] = {"test": evaluate_router(router, test, "the test split", test_embeddings)}
    if external is not None:
        report["external"] = evaluate_router(router, external, "the external set")
        test_accuracy, external_accuracy = report["test"]["in_scope"]["accuracy"], report["external"]["in_scope"]["accuracy"]
        report["gap"] = {"accuracy": round(test_accuracy - external_accuracy, 4), "goal": GAP_GOAL}
        kinds = report["external"].get("per_kind", {})
        report["goals"] = {
            kind: {"figure": figure, "value": kinds[kind][figure], "goal": goal, "met": kinds[kind][figure] >= goal}
            for kind, (figure, goal) in GOALS.items()
            if kind in kinds and kinds[kind][figure] is not None
        }
    return report


def _cell(value: float | None) -> str:
    return "   -  " if value is None else f"{value:6.3f}"


def format_evaluation(report: dict[str, Any]) -> str:
    """A text table: test and external side by side, then the external set per kind."""
    columns = [name for name in ("test", "external") if name in report]
    lines = [f"{'':<34}" + "".join(f"{name:>10}" for name in columns)]
    figures = (
        ("category accuracy (in scope)", lambda part: part["in_scope"]["accuracy"]),
        ("right expert (all prompts)", lambda part: part["expert_choice"]),
        ("fallback, in-scope prompts", lambda part: part["in_scope"]["fallback_rate"]),
        ("fallback, out-of-scope prompts", lambda part: part["out_of_scope"]["fallback_rate"]),
    )
    for title, figure in figures:
        lines.append(f"{title:<34}" + "".join(f"{_cell(figure(report[name])):>10}" for name in columns))
    if "gap" in report:
        lines.append(f"test − external accuracy: {report['gap']['accuracy']:+.3f} (goal: within ±{report['gap']['goal']:.2f})")
    for kind, goal in report.get("goals", {}).items():
        mark = "met" if goal["met"] else "NOT met"
        lines.append(f"  external {kind:<18} {goal['figure']:<14} {goal['value']:.3f}  (goal ≥ {goal['goal']:.2f}: {mark})")
    return "\n".join(lines)
