"""The pipeline's report directory: metrics JSON and the four charts."""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

from router_training.pipeline.sweep import Point


def _pyplot() -> Any:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_reward_accuracy(metrics: dict[str, Any], path: Path) -> None:
    """Pairwise accuracy on held-out pairs: DMoERM per category, and overall against the baseline."""
    plt = _pyplot()
    per_category = metrics["per_category"]
    names = ["overall", *per_category]
    values = [metrics["pairwise_accuracy"], *(row["pairwise_accuracy"] for row in per_category.values())]
    figure, axis = plt.subplots(figsize=(9, 4))
    axis.bar(names, values, color="#3b7dd8", label="DMoERM")
    axis.axhline(metrics["baseline_pairwise_accuracy"], color="#d8743b", linestyle="--", label="single value head (baseline)")
    axis.axhline(0.5, color="grey", linestyle=":", label="chance")
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("pairwise accuracy on held-out pairs")
    axis.set_title(f"Reward model: {metrics['pairwise_accuracy']:.1%} vs baseline {metrics['baseline_pairwise_accuracy']:.1%}")
    axis.tick_params(axis="x", rotation=45)
    axis.legend(loc="lower right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_mapping_evidence(evidence: dict[str, Any], assignment: dict[str, str], path: Path) -> None:
    """Each expert's score per category with its 95% interval; the assigned expert's bar is outlined."""
    import numpy as np
    from matplotlib.patches import Patch

    plt = _pyplot()
    categories = list(evidence)
    experts = sorted({expert for item in evidence.values() for expert in item.score})
    width = 0.8 / max(1, len(experts))
    figure, axis = plt.subplots(figsize=(11, 4.5))
    positions = np.arange(len(categories))
    handles = []
    for offset, expert in enumerate(experts):
        means = [evidence[category].score[expert].mean for category in categories]
        lows = [means[i] - evidence[category].score[expert].low for i, category in enumerate(categories)]
        highs = [evidence[category].score[expert].high - means[i] for i, category in enumerate(categories)]
        bars = axis.bar(positions + offset * width, means, width, yerr=[lows, highs], capsize=3)
        handles.append(Patch(facecolor=bars.patches[0].get_facecolor(), label=expert))  # the legend shows no outline
        for bar, category in zip(bars, categories):
            if assignment.get(category) == expert:
                bar.set_edgecolor("black")
                bar.set_linewidth(2)
    axis.set_xticks(positions + width * (len(experts) - 1) / 2)
    axis.set_xticklabels([f"{category}\n({evidence[category].source})" for category in categories])
    axis.set_ylim(0, 1.05)
    axis.set_ylabel("mean quality, 95% bootstrap interval")
    axis.set_title("Expert scores per category (outlined: assigned); 'check' = share passing, 'reward' = preference over the general expert")
    axis.legend(handles=handles, loc="upper right")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def plot_quality_cost(points: list[Point], budgets: list[Point], references: list[Point], path: Path) -> None:
    """Three views of the trade-off: λ (cost per request), the deployment budget, and τ (fallback)."""
    plt = _pyplot()
    figure, (left, middle, right) = plt.subplots(1, 3, figsize=(16, 4.5))
    lam = [point for point in points if point.confidence_threshold is None]
    tau = [point for point in points if point.confidence_threshold is not None]
    left.plot([p.cost for p in lam], [p.quality for p in lam], "o-", color="#3b7dd8", label="router, λ swept")
    for point in lam:
        left.annotate(point.label, (point.cost, point.quality), fontsize=7, xytext=(3, 3), textcoords="offset points")
    for point in references:
        marker = "*" if point.label == "oracle" else "s"
        left.scatter([point.cost], [point.quality], marker=marker, s=80, label=point.label)
    left.set_xlabel("average cost of the chosen expert per request")
    left.set_ylabel("mean quality of the routed answers")
    left.set_title("Quality against cost as λ is swept")
    left.legend(fontsize=7)
    middle.plot([p.budget for p in budgets], [p.quality for p in budgets], "o-", color="#2a9d5c")
    for point in budgets:
        middle.annotate(point.label, (point.budget, point.quality), fontsize=7, xytext=(3, 3), textcoords="offset points")
    middle.set_xlabel("total cost of the experts deployed (budget)")
    middle.set_ylabel("mean quality of the routed answers")
    middle.set_title("Quality as the CoE budget grows")
    right.plot([p.fallback_share for p in tau], [p.quality for p in tau], "o-", color="#3b7dd8")
    for point in tau:
        right.annotate(point.label, (point.fallback_share, point.quality), fontsize=7, xytext=(3, 3), textcoords="offset points")
    right.set_xlabel("share sent to the general expert")
    right.set_ylabel("mean quality of the routed answers")
    right.set_title("Quality as τ (the fallback threshold) is swept")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def write_metrics(path: Path, metrics: dict[str, Any]) -> None:
    from services.artifacts import write_json_atomic

    def plain(value: Any) -> Any:
        if isinstance(value, Point):
            return asdict(value)
        if isinstance(value, dict):
            return {key: plain(item) for key, item in value.items()}
        if isinstance(value, (list, tuple)):
            return [plain(item) for item in value]
        return value

    write_json_atomic(path, plain(metrics))

