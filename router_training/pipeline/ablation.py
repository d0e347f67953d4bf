"""Which embedder serves: frozen, contrastive dense or contrastive MoE, each with a fitted head.

Every candidate gets the same stage-1 head training (``fit_head``: logistic regression chosen,
temperature-scaled and thresholded on ``calibration``). The MoE gate is also scored on its own,
as a classifier needing no head. The winner is the servable candidate with the best
calibration accuracy; the test split is reported only, so it never chooses.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_training.embedder.pairs import routing_texts
from router_training.router.train import FROZEN, HeadFit, RouterTrainingArgs, Splits, fit_head, softmax
from services.router.config import EmbedderSource, RouterConfig
from services.router.embedder import Embedder

logger = logging.getLogger(__name__)

DESCRIPTIONS = {
    FROZEN: "(a) frozen embedder + head",
    "dense": "(b) contrastive dense + head",
    "moe": "(c) contrastive MoE + head",
    "moe-gate": "(c') contrastive MoE gate alone",
}


@dataclass
class Candidate:
    """One embedder with its fitted head; ``folder`` is None for the configured (frozen) one."""

    variant: str
    embedder: Embedder
    folder: Path | None
    fit: HeadFit

    def categorize(self, texts: list[str], categories: tuple[str, ...]) -> list[str]:
        """Stage 1 of this candidate: the most probable category of each routing text."""
        logits = self.embedder.encode(texts) @ self.fit.weight.T + self.fit.bias
        return [categories[index] for index in softmax(logits).argmax(axis=1)]


@dataclass
class Ablation:
    candidates: dict[str, Candidate]
    rows: list[dict[str, Any]]
    chosen: str

    @property
    def winner(self) -> Candidate:
        return self.candidates[self.chosen]


def gate_row(folder: Path, splits: Splits, router: RouterConfig) -> dict[str, Any]:
    """The MoE gate's own category prediction, on calibration and test."""
    from services.router.moe_embedder import gate_categories, gate_probabilities, load_moe_embedder

    model = load_moe_embedder(folder)
    order = [gate_categories(model).index(category) for category in router.categories]

    def accuracy(name: str) -> float:
        probabilities = gate_probabilities(model, routing_texts(splits.in_scope(name), router.context))[:, order]
        return float((probabilities.argmax(axis=1) == splits.labels(name, router.categories)).mean())

    return {"variant": "moe-gate", "description": DESCRIPTIONS["moe-gate"], "servable": False,
            "calibration_accuracy": accuracy("calibration"), "test_accuracy": accuracy("test")}


def run_ablation(
    splits: Splits, router: RouterConfig, trained: dict[str, Path], args: RouterTrainingArgs = RouterTrainingArgs()
) -> Ablation:
    """Fit a head on the frozen embedder and on each trained one (``variant -> directory``)."""
    sources: dict[str, tuple[EmbedderSource, Path | None]] = {FROZEN: (router.embedder, None)}
    sources.update({variant: (EmbedderSource(path=str(folder)), folder) for variant, folder in trained.items()})
    candidates: dict[str, Candidate] = {}
    rows: list[dict[str, Any]] = []
    for variant, (source, folder) in sources.items():
        embedder = Embedder(source, reference=f"trained:{variant}" if folder else None)
        fit = fit_head(embedder, splits, router, args)
        candidates[variant] = Candidate(variant, embedder, folder, fit)
        rows.append({"variant": variant, "description": DESCRIPTIONS.get(variant, variant), "servable": True,
                     "calibration_accuracy": fit.calibration_accuracy, "test_accuracy": fit.metrics["test"]["accuracy"]})
        if variant == "moe" and folder is not None:
            rows.append(gate_row(folder, splits, router))
    # Ties go to the simpler model: frozen, then dense, then MoE (the order above).
    chosen = max((row for row in rows if row["servable"]), key=lambda row: row["calibration_accuracy"])["variant"]
    for row in rows:
        row["chosen"] = row["variant"] == chosen
    logger.info("ablation: %s serves (calibration accuracy %.3f)", chosen, candidates[chosen].fit.calibration_accuracy)
    return Ablation(candidates=candidates, rows=rows, chosen=chosen)


def format_ablation(rows: list[dict[str, Any]]) -> str:
    """The ablation as a text table; the serving row is marked."""
    lines = [f"{'stage-1 classifier':<36}{'calibration acc':>16}{'test acc':>10}"]
    for row in rows:
        mark = "  <- serves (best on calibration)" if row.get("chosen") else ("  (report only)" if not row["servable"] else "")
        lines.append(f"{row['description']:<36}{row['calibration_accuracy']:>16.3f}{row['test_accuracy']:>10.3f}{mark}")
    return "\n".join(lines)

