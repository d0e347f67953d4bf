"""``coe train router``: fit the stage-1 head, calibrate it, and publish a router artifact.

1. Routing texts are built with the serving code (``routing_text``) and embedded once.
2. A multinomial logistic-regression head (scikit-learn) is fitted on ``train``, its L2 strength
   chosen by accuracy on ``calibration``.
3. On ``calibration``: a softmax temperature (minimising log-loss), then τ as the confidence
   below which the chosen share of calibration prompts falls back to the general expert.
4. On ``test``: accuracy, per-category precision/recall and the confusion matrix (reported only).
5. The score table comes from the config's ``initial_scores`` (reward-based scores replace it
   in a later version); the artifact is written to the store and, by default, made current.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_training.router.data import DATA_DIR, Example, read_examples
from services.artifacts import file_sha256
from services.config import AppConfig
from services.router.artifact import RouterArtifact, RouterManifest, write_router_artifact
from services.router.config import RouterConfig
from services.router.embedder import Embedder
from services.router.routing_input import routing_text
from services.router.stages import entropy
from services.router.store import RouterStore

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class RouterTrainingArgs:
    data_dir: Path = DATA_DIR
    regularisation_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # C candidates, chosen on calibration
    fallback_share: float = 0.10  # share of calibration prompts below τ
    entropy_fraction: float = 0.9  # entropy bound as a fraction of log(categories)
    seed: int = 0


def score_table(config: AppConfig) -> dict[str, dict[str, float]]:
    """s(category, expert) for every category and configured expert, from ``initial_scores``."""
    router = config.router
    assert router is not None
    return {
        category: {
            expert.name: float(router.initial_scores.get(category, {}).get(expert.name, router.default_score))
            for expert in config.experts
        }
        for category in router.categories
    }


def embed(embedder: Embedder, examples: list[Example], router: RouterConfig, label: str) -> np.ndarray:
    texts = [routing_text(example.messages, router.context)[0] for example in examples]
    logger.info("embedding %d %s prompts", len(texts), label)
    return embedder.encode(texts, show_progress=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(temperature: float) -> float:
        return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(loss, bounds=(0.05, 20.0), method="bounded").x)


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    total = 0.0
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            total += inside.mean() * abs(correct[inside].mean() - confidence[inside].mean())
    return float(total)


def softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=1, keepdims=True)


def evaluate(probabilities: np.ndarray, labels: np.ndarray, categories: tuple[str, ...], tau: float, bound: float) -> dict[str, Any]:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    predicted = probabilities.argmax(axis=1)
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predicted, labels=list(range(len(categories))), zero_division=0
    )
    fallback = (probabilities.max(axis=1) < tau) | (entropy(probabilities) > bound)
    return {
        "accuracy": float((predicted == labels).mean()),
        "accuracy_when_confident": float((predicted == labels)[~fallback].mean()) if (~fallback).any() else 0.0,
        "fallback_rate": float(fallback.mean()),
        "per_category": {
            category: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for category, p, r, f, s in zip(categories, precision, recall, f1, support)
        },
        "confusion": confusion_matrix(labels, predicted, labels=list(range(len(categories)))).tolist(),
    }


def plot_confusion(metrics: dict[str, Any], categories: tuple[str, ...], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    matrix = np.array(metrics["confusion"])
    figure, axis = plt.subplots(figsize=(7, 6))
    axis.imshow(matrix, cmap="Blues")
    axis.set_xticks(range(len(categories)), categories, rotation=45, ha="right")
    axis.set_yticks(range(len(categories)), categories)
    for (row, column), count in np.ndenumerate(matrix):
        axis.text(column, row, str(count), ha="center", va="center", color="white" if count > matrix.max() / 2 else "black")
    axis.set_xlabel("predicted")
    axis.set_ylabel("true category")
    axis.set_title(f"Router on the test split: accuracy {metrics['accuracy']:.1%}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


def train_router(
    config: AppConfig, args: RouterTrainingArgs = RouterTrainingArgs(), *, activate: bool = True, report_dir: Path | None = None
) -> RouterArtifact:
    from sklearn.linear_model import LogisticRegression

    router = config.router
    if router is None:
        raise ValueError("the config has no `router` section")
    categories = router.categories
    split = {name: read_examples(args.data_dir / f"{name}.jsonl", categories) for name in ("train", "calibration", "test")}
    missing = sorted(set(categories) - {example.category for example in split["train"]})
    if missing:
        raise ValueError(f"the train split has no examples of {missing}; every category needs some")
    embedder = Embedder(router.embedder)
    features = {name: embed(embedder, examples, router, name) for name, examples in split.items()}
    labels = {name: np.array([categories.index(example.category) for example in examples]) for name, examples in split.items()}

    def fitted(strength: float) -> LogisticRegression:
        return LogisticRegression(C=strength, max_iter=5000, random_state=args.seed).fit(features["train"], labels["train"])

    candidates = [(fitted(strength), strength) for strength in args.regularisation_grid]
    head, strength = max(candidates, key=lambda item: (item[0].score(features["calibration"], labels["calibration"]), -item[1]))
    weight = np.zeros((len(categories), embedder.dimension), dtype=np.float32)
    bias = np.zeros(len(categories), dtype=np.float32)
    weight[head.classes_] = head.coef_
    bias[head.classes_] = head.intercept_

    def logits(name: str) -> np.ndarray:
        return features[name] @ weight.T + bias

    temperature = fit_temperature(logits("calibration"), labels["calibration"])
    calibrated = softmax(logits("calibration") / temperature)
    tau = float(np.quantile(calibrated.max(axis=1), args.fallback_share))
    bound = args.entropy_fraction * math.log(len(categories))
    test_metrics = evaluate(softmax(logits("test") / temperature), labels["test"], categories, tau, bound)
    metrics = {
        "test": test_metrics,
        "train_accuracy": float((logits("train").argmax(axis=1) == labels["train"]).mean()),
        "calibration_ece_before": expected_calibration_error(softmax(logits("calibration")), labels["calibration"]),
        "calibration_ece_after": expected_calibration_error(calibrated, labels["calibration"]),
    }
    counts = np.bincount(labels["train"], minlength=len(categories))
    manifest = RouterManifest(
        name="router",
        version="",
        taxonomy=categories,
        embedder=embedder.reference,
        embedding_dimension=embedder.dimension,
        context=router.context,
        temperature=temperature,
        confidence_threshold=tau,
        entropy_threshold=bound,
        scores=score_table(config),
        category_shares={category: float(count / counts.sum()) for category, count in zip(categories, counts)},
        parent=RouterStore(Path(router.store)).current_version() if Path(router.store).is_dir() else None,
        data={
            name: {"file": f"{name}.jsonl", "sha256": file_sha256(args.data_dir / f"{name}.jsonl"), "examples": len(split[name])}
            for name in split
        },
        training={
            **{key: value for key, value in asdict(args).items() if key != "data_dir"},  # data is identified by hash
            "head": "logistic-regression",
            "regularisation": strength,
        },
        metrics=metrics,
    )
    artifact = write_router_artifact(Path(router.store), manifest, weight, bias)
    if activate:
        RouterStore(Path(router.store)).use(artifact.version)
    if report_dir is not None:
        plot_confusion(test_metrics, categories, report_dir / "router_confusion.png")
    return artifact
