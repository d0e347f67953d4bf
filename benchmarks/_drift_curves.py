"""What happens inside a drift stream, over time: the curves behind ``coe bench drift``'s table.

A final accuracy hides when a learner fell behind and how fast it came back. Per stream this
records, in windows of ``len(stream) / POINTS`` instances:

- each learner's accuracy in the window (DriftMoE, ARF, HAT);
- DriftMoE's gate: the share of the window's instances whose highest router weight went to each
  tree (expert usage);
- each tree's own accuracy in the window, whether or not the gate used it.

and draws them one above the other, with the drift points marked (``drift_<stream>.png``).
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

POINTS = 100  # windows per curve


class StreamCurves:
    """Windowed accuracy of several learners on one stream, and DriftMoE's gate and trees."""

    def __init__(self, n_instances: int, n_trees: int) -> None:
        self.window = max(1, n_instances // POINTS)
        self.n_trees = n_trees
        self.accuracy: dict[str, list[float]] = {}
        self.gate_usage: list[list[float]] = []
        self.tree_accuracy: list[list[float]] = []
        self._usage = np.zeros(n_trees)
        self._hits = np.zeros(n_trees)
        self._seen = 0

    def learner_accuracy(self, name: str, correct: Sequence[bool]) -> None:
        """One learner's test-then-train outcomes, in stream order."""
        hits = np.asarray(correct, dtype=np.float64)
        usable = len(hits) // self.window * self.window
        self.accuracy[name] = [round(float(value), 4) for value in hits[:usable].reshape(-1, self.window).mean(axis=1)]

    def observe_experts(self, weights: np.ndarray, tree_predictions: Sequence[Hashable | None], y: Hashable) -> None:
        """DriftMoE's view of one instance, before it learns the label."""
        self._usage[int(np.argmax(weights))] += 1
        self._hits += np.fromiter((prediction == y for prediction in tree_predictions), dtype=np.float64, count=self.n_trees)
        self._seen += 1
        if self._seen == self.window:
            self.gate_usage.append([round(float(value), 4) for value in self._usage / self.window])
            self.tree_accuracy.append([round(float(value), 4) for value in self._hits / self.window])
            self._usage[:] = 0
            self._hits[:] = 0
            self._seen = 0

    def as_dict(self) -> dict[str, Any]:
        return {"window": self.window, "accuracy": self.accuracy, "gate_usage": self.gate_usage, "tree_accuracy": self.tree_accuracy}


def plot_stream(name: str, curves: dict[str, Any], n_instances: int, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = curves["window"]
    figure, (top, middle, bottom) = plt.subplots(3, 1, figsize=(9, 9), sharex=True)
    for learner, series in curves["accuracy"].items():
        top.plot((np.arange(len(series)) + 1) * window, series, label={"driftmoe": "DriftMoE", "arf": "ARF", "hat": "HAT"}.get(learner, learner))
    top.set_ylabel(f"accuracy per {window:,} instances")
    top.set_title(f"{name}: prequential accuracy, DriftMoE's gate and its trees")
    top.legend(loc="lower right")

    usage = np.asarray(curves["gate_usage"])
    accuracy = np.asarray(curves["tree_accuracy"])
    if usage.size:
        ends = (np.arange(usage.shape[0]) + 1) * window
        colours = [plt.get_cmap("tab20")(index % 20) for index in range(usage.shape[1])]  # one colour per tree, in both panels
        middle.stackplot(ends, usage.T, labels=[f"tree {index}" for index in range(usage.shape[1])], colors=colours)
        middle.set_ylabel("gate's top tree (share)")
        middle.set_ylim(0, 1)
        middle.legend(loc="upper left", ncol=6, fontsize="x-small")
        for index in range(accuracy.shape[1]):
            bottom.plot(ends, accuracy[:, index], linewidth=0.8, color=colours[index])
        bottom.set_ylabel("each tree's accuracy")
    bottom.set_xlabel("instance")
    for axes in (top, middle, bottom):
        for drift in (n_instances // 4, n_instances // 2, 3 * n_instances // 4):
            axes.axvline(drift, color="tab:red", linestyle="--", linewidth=0.8)
    figure.tight_layout()
    figure.savefig(path, dpi=80)
    plt.close(figure)
