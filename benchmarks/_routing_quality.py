"""How well the served router routes labelled prompts: the report's routing-quality section.

Every prompt goes through the serving code (``StaticRouter``: stage 1, the fallbacks, the
out-of-distribution check, the score table), once; from those decisions come

- on in-scope prompts: accuracy, macro-F1, recall per category, the confusion matrix, and the
  calibration of stage 1's top probability (expected calibration error over ten bins, and the
  reliability diagram);
- on every prompt: the share that fell back to the general expert at the configured τ (in scope
  and out of scope apart), and the share that reached the right expert (``evaluate.right_expert``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from router_training.router.data import Example
from router_training.router.evaluate import decide_examples, evaluate_router
from router_training.router.train import evaluate, expected_calibration_error, plot_confusion, reliability_bins


def routing_quality(router: Any, examples: list[Example], name: str) -> dict[str, Any]:
    manifest = router.artifact.manifest
    taxonomy = tuple(manifest.taxonomy)
    decisions = decide_examples(router, examples, name)
    served = evaluate_router(router, examples, decisions=decisions)
    in_scope = [(example, decision) for example, decision in zip(examples, decisions) if example.in_scope]
    probabilities = np.array([[decision.probabilities[category] for category in taxonomy] for _, decision in in_scope])
    labels = np.array([taxonomy.index(example.category) for example, _ in in_scope])
    figures = evaluate(probabilities, labels, taxonomy, manifest.confidence_threshold, manifest.entropy_threshold)
    present = [row for row in figures["per_category"].values() if row["support"] > 0]
    return {
        "data": name,
        "prompts": len(examples),
        "in_scope_prompts": len(in_scope),
        "accuracy": figures["accuracy"],
        "macro_f1": float(np.mean([row["f1"] for row in present])),
        "recall": {category: row["recall"] for category, row in figures["per_category"].items() if row["support"] > 0},
        "confusion": figures["confusion"],
        "expected_calibration_error": expected_calibration_error(probabilities, labels),
        "reliability": reliability_bins(probabilities, labels),
        "fallback_rate": served["fallback_rate"],
        "fallback_rate_in_scope": served["in_scope"]["fallback_rate"],
        "fallback_rate_out_of_scope": served["out_of_scope"]["fallback_rate"],
        "right_expert": served["expert_choice"],
        "confidence_threshold": manifest.confidence_threshold,
    }


def plot_quality(result: dict[str, Any], taxonomy: tuple[str, ...], folder: Path, stem: str) -> list[Path]:
    """``<stem>_confusion.png`` and ``<stem>_reliability.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    confusion = folder / f"{stem}_confusion.png"
    plot_confusion({"confusion": result["confusion"], "accuracy": result["accuracy"]}, taxonomy, confusion, result["data"])
    reliability = folder / f"{stem}_reliability.png"
    figure, axis = plt.subplots(figsize=(5.5, 5))
    bins = result["reliability"]
    axis.plot([0, 1], [0, 1], linestyle=":", color="grey", label="perfect calibration")
    axis.bar([row["low"] for row in bins], [row["accuracy"] for row in bins], width=0.1, align="edge",
             edgecolor="black", color="#3b7dd8", alpha=0.8, label="accuracy in the bin")
    axis.plot([row["confidence"] for row in bins], [row["accuracy"] for row in bins], "o", color="#d8743b",
              label="mean confidence in the bin")
    axis.set_xlim(0, 1)
    axis.set_ylim(0, 1.02)
    axis.set_xlabel("stage-1 top probability")
    axis.set_ylabel("share right")
    axis.set_title(f"Reliability on {result['data']}: ECE {result['expected_calibration_error']:.3f}")
    axis.legend(loc="upper left")
    figure.tight_layout()
    figure.savefig(reliability, dpi=120)
    plt.close(figure)
    return [confusion, reliability]
