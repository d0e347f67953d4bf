"""Peer classifiers of a prompt's category, on the same data as coe-router's stage 1.

What a team would otherwise use to pick a category, each fitted on the train split's prompts:

- **kNN over MiniLM embeddings**: the packaged all-MiniLM-L6-v2 (the model coe-router's embedder
  starts from, and the one a semantic router would use), cosine distance, a vote of the nearest
  ``KNN_NEIGHBOURS`` train prompts weighted by similarity;
- **TF-IDF + logistic regression** (scikit-learn): word and bigram TF-IDF, multinomial logistic
  regression, no embeddings at all.

Each is scored like stage 1: accuracy and macro-F1 on labelled prompts, and decisions per second
with one prompt per call and with ``BATCH`` per call, measured in the same run as stage 1's own.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

KNN_NEIGHBOURS = 10
BATCH = 32


@dataclass(frozen=True)
class PeerResult:
    name: str
    accuracy: float
    macro_f1: float
    decisions_per_s: dict[str, float]  # "batch_1", "batch_32"

    def as_dict(self) -> dict[str, Any]:
        return {"accuracy": self.accuracy, "macro_f1": self.macro_f1, "decisions_per_s": self.decisions_per_s}


Classify = Callable[[list[str]], list[str]]


def knn_over_minilm(train_texts: Sequence[str], train_labels: Sequence[str]) -> Classify:
    from sklearn.neighbors import KNeighborsClassifier

    from services.router.config import EmbedderSource
    from services.router.embedder import Embedder

    embedder = Embedder(EmbedderSource())
    model = KNeighborsClassifier(n_neighbors=KNN_NEIGHBOURS, metric="cosine", weights="distance")
    model.fit(embedder.encode(list(train_texts)), list(train_labels))
    return lambda texts: [str(label) for label in model.predict(embedder.encode(texts))]


def tfidf_logistic_regression(train_texts: Sequence[str], train_labels: Sequence[str]) -> Classify:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline

    model = make_pipeline(TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True, min_df=1), LogisticRegression(max_iter=2000))
    model.fit(list(train_texts), list(train_labels))
    return lambda texts: [str(label) for label in model.predict(texts)]


PEERS: dict[str, Callable[[Sequence[str], Sequence[str]], Classify]] = {
    "knn_minilm": knn_over_minilm,
    "tfidf_logreg": tfidf_logistic_regression,
}


def score(name: str, classify: Classify, texts: Sequence[str], labels: Sequence[str], speed_texts: Sequence[str]) -> PeerResult:
    """Accuracy and macro-F1 on ``texts``; decisions/s over ``speed_texts``, one per call and ``BATCH`` per call."""
    from sklearn.metrics import f1_score

    predicted = classify(list(texts))
    accuracy = float(np.mean([p == y for p, y in zip(predicted, labels)]))
    macro_f1 = float(f1_score(list(labels), predicted, average="macro", labels=sorted(set(labels)), zero_division=0))
    speed = {}
    for size in (1, BATCH):
        started = time.perf_counter()
        for start in range(0, len(speed_texts), size):
            classify(list(speed_texts[start : start + size]))
        speed[f"batch_{size}"] = round(len(speed_texts) / (time.perf_counter() - started), 1)
    return PeerResult(name, round(accuracy, 4), round(macro_f1, 4), speed)


def compare(stage1: Classify, train_texts: Sequence[str], train_labels: Sequence[str], texts: Sequence[str],
            labels: Sequence[str], speed_texts: Sequence[str]) -> dict[str, dict[str, Any]]:
    """Stage 1 and every peer on the same prompts; each peer's figures also as ratios to stage 1's."""
    results = {"coe_stage1": score("coe_stage1", stage1, texts, labels, speed_texts)}
    for name, build in PEERS.items():
        results[name] = score(name, build(train_texts, train_labels), texts, labels, speed_texts)
    reference = results["coe_stage1"].as_dict()
    return {name: {**result.as_dict(), "vs_stage1": relative_to(result.as_dict(), reference)} for name, result in results.items()}


def relative_to(row: dict[str, Any], reference: dict[str, Any]) -> dict[str, float]:
    """A peer's figures against stage 1's: accuracy and macro-F1 as differences, speeds as ratios."""
    return {
        "accuracy": round(row["accuracy"] - reference["accuracy"], 4),
        "macro_f1": round(row["macro_f1"] - reference["macro_f1"], 4),
        **{key: round(value / reference["decisions_per_s"][key], 3) for key, value in row["decisions_per_s"].items()},
    }


def stage1_classifier(router: Any) -> Classify:
    """coe-router's stage 1 (through the serving router) as a classifier of single prompts."""

    def classify(texts: list[str]) -> list[str]:
        decisions = router.decide([router.prepare([{"role": "user", "content": text}]) for text in texts])
        return [str(decision.category) for decision in decisions]

    return classify
