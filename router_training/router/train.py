"""``coe train router``: fine-tune the embedder, fit the stage-1 head, calibrate it, publish a router.

1. By default the embedder is first fine-tuned contrastively on ``train`` (``dense``, the
   ablation's best); ``frozen`` keeps the configured one as it ships.
2. Routing texts are built with the serving code (``routing_text``) and embedded once.
3. A multinomial logistic-regression head (scikit-learn) is fitted on the in-scope rows of
   ``train``, its L2 strength chosen by accuracy on ``calibration``.
4. On ``calibration``: a softmax temperature (minimising log-loss), τ as the confidence below
   which calibration prompts are more often classified wrongly than rightly (they go to the
   general expert), and the out-of-distribution check (``router_training.router.ood``) with
   chit-chat as positives.
5. On ``test``: accuracy, per-category precision/recall and the confusion matrix (reported only).
6. The score table comes from the config's ``initial_scores`` (reward-based scores replace it
   in a later version); the artifact is written to the store, evaluated through the serving
   code on the test split and the external set, and by default made current.
"""

from __future__ import annotations

import logging
import math
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from router_training.embedder.train import EmbedderTrainingArgs
from router_training.router.data import DATA_DIR, DataError, Example, read_examples
from router_training.router.ood import fit_ood, rates
from services.artifacts import file_sha256, signing_key, write_json_atomic
from services.config import AppConfig
from services.router.artifact import RouterArtifact, RouterManifest, write_router_artifact
from services.router.config import RouterConfig
from services.router.embedder import Embedder
from services.router.ood import OutOfDistribution
from services.router.routing_input import routing_text
from services.router.stages import entropy
from services.router.store import RouterStore

logger = logging.getLogger(__name__)

FROZEN = "frozen"
EMBEDDER_VARIANTS = (FROZEN, "dense", "moe")
DEFAULT_EMBEDDER = "dense"  # the ablation's best (``coe train all`` reports it)


@dataclass(frozen=True)
class RouterTrainingArgs:
    data_dir: Path = DATA_DIR
    regularisation_grid: tuple[float, ...] = (1.0, 2.0, 4.0, 8.0, 16.0, 32.0)  # C candidates, chosen on calibration
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
    if not texts:
        return np.zeros((0, embedder.dimension), dtype=np.float32)
    logger.info("embedding %d %s prompts", len(texts), label)
    return embedder.encode(texts, show_progress=True)


def fit_temperature(logits: np.ndarray, labels: np.ndarray) -> float:
    from scipy.optimize import minimize_scalar
    from scipy.special import log_softmax

    def loss(temperature: float) -> float:
        return float(-log_softmax(logits / temperature, axis=1)[np.arange(len(labels)), labels].mean())

    return float(minimize_scalar(loss, bounds=(0.05, 20.0), method="bounded").x)


def more_often_wrong_below(confidence: np.ndarray, correct: np.ndarray) -> float:
    """τ: the confidence below which the calibration prompts are classified wrongly more often
    than rightly, so the general expert is the better bet for them.

    Falling back the ``k`` least confident prompts gains ``Σ (2·correct − 1)`` over the accepted
    ones; τ is the confidence of the first accepted prompt at the best ``k`` (0 when no prompt
    is worth falling back). Chit-chat and other out-of-scope requests are the
    out-of-distribution check's to catch, not τ's.
    """
    order = np.argsort(confidence, kind="stable")
    value = np.where(correct[order], 1.0, -1.0)
    accepted_gain = value[::-1].cumsum()[::-1]  # gain when prompts order[k:] are accepted
    best = int(np.argmax(accepted_gain))
    return float(confidence[order][best]) if best > 0 else 0.0


def reliability_bins(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> list[dict[str, float]]:
    """Top-category confidence against accuracy in equal-width confidence bins (the reliability
    diagram); empty bins are left out."""
    confidence = probabilities.max(axis=1)
    correct = probabilities.argmax(axis=1) == labels
    edges = np.linspace(0, 1, bins + 1)
    rows = []
    for low, high in zip(edges[:-1], edges[1:]):
        inside = (confidence > low) & (confidence <= high)
        if inside.any():
            rows.append({"low": float(low), "high": float(high), "share": float(inside.mean()),
                         "confidence": float(confidence[inside].mean()), "accuracy": float(correct[inside].mean())})
    return rows


def expected_calibration_error(probabilities: np.ndarray, labels: np.ndarray, bins: int = 10) -> float:
    return float(sum(row["share"] * abs(row["accuracy"] - row["confidence"]) for row in reliability_bins(probabilities, labels, bins)))


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


def plot_confusion(metrics: dict[str, Any], categories: tuple[str, ...], path: Path, data: str = "the test split") -> None:
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
    axis.set_title(f"Router on {data}: accuracy {metrics['accuracy']:.1%}")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path, dpi=120)
    plt.close(figure)


@dataclass(frozen=True)
class Splits:
    """The three named splits, read and checked against the taxonomy.

    ``examples`` holds every row, ``out_of_scope`` ones included; the head learns from and is
    scored on the in-scope ones (``in_scope``), the out-of-distribution check on both.
    """

    examples: dict[str, list[Example]]
    data_dir: Path

    @classmethod
    def read(cls, data_dir: Path, categories: tuple[str, ...], minimum_per_category: int = 5) -> "Splits":
        examples = {name: read_examples(data_dir / f"{name}.jsonl", categories) for name in ("train", "calibration", "test")}
        counts = {category: sum(example.category == category for example in examples["train"]) for category in categories}
        few = {category: count for category, count in counts.items() if count < minimum_per_category}
        if few:
            raise DataError(
                f"{data_dir / 'train.jsonl'}: too few examples for {few}; "
                f"every category needs at least {minimum_per_category}"
            )
        return cls(examples=examples, data_dir=data_dir)

    def in_scope(self, name: str) -> list[Example]:
        return [example for example in self.examples[name] if example.in_scope]

    def out_of_scope(self, name: str) -> list[Example]:
        return [example for example in self.examples[name] if not example.in_scope]

    def labels(self, name: str, categories: tuple[str, ...]) -> np.ndarray:
        """Category indices of the in-scope rows of ``name``, in their order."""
        return np.array([categories.index(example.category) for example in self.in_scope(name)])

    def provenance(self) -> dict[str, Any]:
        return {
            name: {"file": f"{name}.jsonl", "sha256": file_sha256(self.data_dir / f"{name}.jsonl"), "examples": len(rows)}
            for name, rows in self.examples.items()
        }


@dataclass(frozen=True)
class HeadFit:
    """A calibrated stage-1 head for one embedder, with its metrics."""

    weight: np.ndarray  # (categories, dimension)
    bias: np.ndarray  # (categories,)
    temperature: float
    tau: float
    entropy_bound: float
    regularisation: float
    calibration_accuracy: float
    metrics: dict[str, Any]
    ood: OutOfDistribution | None = None
    test_embeddings: np.ndarray | None = None  # every test row, in order: the evaluation reuses them


def fit_head(embedder: Embedder, splits: Splits, router: RouterConfig, args: RouterTrainingArgs) -> HeadFit:
    """Fit, calibrate and evaluate a logistic-regression head on ``embedder``'s embeddings."""
    from sklearn.linear_model import LogisticRegression

    categories = router.categories
    embedded = {name: embed(embedder, examples, router, name) for name, examples in splits.examples.items()}
    in_scope = {name: np.array([example.in_scope for example in examples], dtype=bool) for name, examples in splits.examples.items()}
    features = {name: embedded[name][in_scope[name]] for name in embedded}
    outside = {name: embedded[name][~in_scope[name]] for name in embedded}
    labels = {name: splits.labels(name, categories) for name in splits.examples}

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
    tau = more_often_wrong_below(calibrated.max(axis=1), calibrated.argmax(axis=1) == labels["calibration"])
    bound = args.entropy_fraction * math.log(len(categories))
    metrics = {
        "test": evaluate(softmax(logits("test") / temperature), labels["test"], categories, tau, bound),
        "train_accuracy": float((logits("train").argmax(axis=1) == labels["train"]).mean()),
        "calibration_accuracy": float((logits("calibration").argmax(axis=1) == labels["calibration"]).mean()),
        "calibration_ece_before": expected_calibration_error(softmax(logits("calibration")), labels["calibration"]),
        "calibration_ece_after": expected_calibration_error(calibrated, labels["calibration"]),
    }
    ood, metrics["out_of_distribution"] = fit_ood(features["train"], outside["train"], features["calibration"], outside["calibration"])
    if ood is not None:
        metrics["out_of_distribution"]["test"] = rates(ood, features["test"], outside["test"])
    return HeadFit(weight, bias, temperature, tau, bound, strength, metrics["calibration_accuracy"], metrics, ood, embedded["test"])


def publish_router(
    config: AppConfig,
    fit: HeadFit,
    embedder: Embedder,
    splits: Splits,
    *,
    scores: dict[str, dict[str, float]],
    training: dict[str, Any],
    extra_metrics: dict[str, Any] | None = None,
    embedder_dir: Path | None = None,
    activate: bool = True,
) -> RouterArtifact:
    """Write a router version (bundling a trained embedder when given) and optionally make it current."""
    router = config.router
    assert router is not None
    categories = router.categories
    counts = np.bincount(splits.labels("train", categories), minlength=len(categories))
    store = RouterStore.from_config(config)
    manifest = RouterManifest(
        name="router",
        version="",
        taxonomy=categories,
        embedder=embedder.reference,
        embedding_dimension=embedder.dimension,
        context=router.context,
        temperature=fit.temperature,
        confidence_threshold=fit.tau,
        entropy_threshold=fit.entropy_bound,
        scores=scores,
        category_shares={category: float(count / counts.sum()) for category, count in zip(categories, counts)},
        parent=store.current_version() if store.root.is_dir() else None,
        data=splits.provenance(),
        training={**training, "head": "logistic-regression", "regularisation": fit.regularisation},
        metrics={**fit.metrics, **(extra_metrics or {})},
    )
    artifact = write_router_artifact(
        store.root, manifest, fit.weight, fit.bias, embedder_dir=embedder_dir, ood=fit.ood, key=store.key
    )
    if activate:
        store.use(artifact.version)
    return artifact


def train_router(
    config: AppConfig,
    args: RouterTrainingArgs = RouterTrainingArgs(),
    *,
    embedder_variant: str = DEFAULT_EMBEDDER,
    embedder_args: EmbedderTrainingArgs | None = None,
    activate: bool = True,
    report_dir: Path | None = None,
) -> tuple[RouterArtifact, dict[str, Any]]:
    """A router from the seed splits, scored with ``initial_scores``; returns it with its evaluation.

    ``embedder_variant`` is ``frozen`` (the configured embedder as it ships), ``dense`` (fine-tuned
    contrastively first: the ablation's best, the default) or ``moe``. The version is evaluated
    through the serving code on the test split and the external set before it is made current.
    """
    from router_training.embedder.onnx_export import export_if_possible
    from router_training.embedder.train import train_embedder
    from router_training.router.evaluate import evaluate_splits, format_evaluation, read_external
    from services.router.config import EmbedderSource
    from services.router.loader import RouterFactory
    from services.router.store import RouterStore

    router = config.router
    if router is None:
        raise ValueError("the config has no `router` section")
    if embedder_variant not in EMBEDDER_VARIANTS:
        raise ValueError(f"embedder_variant must be one of {list(EMBEDDER_VARIANTS)}; got {embedder_variant!r}")
    splits = Splits.read(args.data_dir, router.categories)
    external = read_external(router.categories, args.data_dir)
    training: dict[str, Any] = {key: value for key, value in asdict(args).items() if key != "data_dir"}  # data is identified by hash
    training["embedder_variant"] = embedder_variant
    with tempfile.TemporaryDirectory(prefix="router-embedder-") as scratch:
        folder = None
        embedder = Embedder(router.embedder)
        if embedder_variant != FROZEN:
            embedder_args = embedder_args or EmbedderTrainingArgs.budget()
            training["embedder"] = asdict(embedder_args)
            folder = train_embedder(
                router.embedder, router.categories, splits.examples["train"], Path(scratch) / embedder_variant,
                embedder_variant, embedder_args, key=signing_key(config),  # type: ignore[arg-type]
            )
            embedder = Embedder(EmbedderSource(path=str(folder)), reference=f"trained:{embedder_variant}")
            # The head is fitted on the fp32 embeddings, the reference either backend serves within
            # int8 error; the export is bundled beside them for serving.
            training["onnx_export"] = export_if_possible(folder)
        fit = fit_head(embedder, splits, router, args)
        artifact = publish_router(
            config, fit, embedder, splits, scores=score_table(config), training=training, embedder_dir=folder, activate=False
        )
    served = RouterFactory(config).build(artifact)
    # Evaluated as served: the test split is embedded again when serving uses the export.
    reused = fit.test_embeddings if served.embedder.backend == embedder.backend else None
    evaluation = evaluate_splits(served, splits.examples["test"], external, reused)
    print(format_evaluation(evaluation))
    if report_dir is not None:
        plot_confusion(fit.metrics["test"], router.categories, report_dir / "router_confusion.png")
        write_json_atomic(report_dir / "router_evaluation.json", {"router_version": artifact.version, **evaluation})
    if activate:
        RouterStore.from_config(config).use(artifact.version)
    return artifact, evaluation
