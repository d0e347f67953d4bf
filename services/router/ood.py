"""Out-of-distribution check: is a request far from everything the router was trained on?

A category head always names a category, however unlike its training data a request is: "ok"
or "hello" would go to roleplay at high confidence. So the router also measures how far a
request lies from the training prompts, in the embedding space it classifies in, by k nearest
neighbours (cosine similarity of unit-length embeddings):

    score = mean top-k similarity to the out-of-scope bank − mean top-k similarity to the in-scope bank

with the in-scope bank the training prompts of the taxonomy's categories and the out-of-scope
bank the training chit-chat and task-less requests. Without an out-of-scope bank the score is the
distance ``1 − mean top-k similarity`` to the in-scope bank alone. Above the threshold, which
training chooses on the calibration split (chit-chat included), the request is out of
distribution and the general expert answers it.

The banks travel in the router artifact (``ood.safetensors``, float16), so a version decides
the same wherever it is loaded.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

OOD_FILE = "ood.safetensors"
IN_SCOPE = "in_scope"
OUT_OF_SCOPE = "out_of_scope"
REASON = "out_of_distribution"


class OutOfDistributionSettings(BaseModel):
    """The check as the router manifest records it (the banks are in ``ood.safetensors``)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field("knn", description="k nearest neighbours in the router's embedding space.")
    neighbours: int = Field(ge=1, description="k: similarities averaged per bank.")
    threshold: float = Field(description="Scores above it are out of distribution; chosen on the calibration split.")
    in_scope_examples: int = Field(ge=1)
    out_of_scope_examples: int = Field(0, ge=0)


class OutOfDistribution:
    """Scores a batch of unit-length embeddings against the banks."""

    def __init__(self, settings: OutOfDistributionSettings, in_scope: np.ndarray, out_of_scope: np.ndarray | None) -> None:
        self.settings = settings
        self._in_scope = np.ascontiguousarray(in_scope, dtype=np.float32)  # (n, dimension)
        self._out_of_scope = (
            None if out_of_scope is None or not len(out_of_scope) else np.ascontiguousarray(out_of_scope, dtype=np.float32)
        )

    @property
    def threshold(self) -> float:
        return self.settings.threshold

    def _top_k_similarity(self, embeddings: np.ndarray, bank: np.ndarray) -> np.ndarray:
        k = min(self.settings.neighbours, len(bank))
        similarity = embeddings @ bank.T  # (batch, n)
        return np.partition(similarity, -k, axis=1)[:, -k:].mean(axis=1)

    def scores(self, embeddings: np.ndarray) -> np.ndarray:
        """Higher is further from the in-scope training data, one score per row."""
        in_scope = self._top_k_similarity(embeddings, self._in_scope)
        if self._out_of_scope is None:
            return 1.0 - in_scope
        return self._top_k_similarity(embeddings, self._out_of_scope) - in_scope

    def flags(self, embeddings: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(scores, out of distribution?) per row."""
        scores = self.scores(embeddings)
        return scores, scores > self.threshold

    def tensors(self) -> dict[str, np.ndarray]:
        """What ``ood.safetensors`` holds."""
        tensors = {IN_SCOPE: self._in_scope.astype(np.float16)}
        if self._out_of_scope is not None:
            tensors[OUT_OF_SCOPE] = self._out_of_scope.astype(np.float16)
        return tensors

    @classmethod
    def load(cls, settings: OutOfDistributionSettings, path: Path, dimension: int) -> "OutOfDistribution":
        """The check of an artifact; raises ``ValueError`` when the banks do not match the manifest."""
        from safetensors.numpy import load_file

        tensors = load_file(str(path))
        in_scope, out_of_scope = tensors.get(IN_SCOPE), tensors.get(OUT_OF_SCOPE)
        if in_scope is None or in_scope.shape != (settings.in_scope_examples, dimension):
            raise ValueError(f"{path.name}: the in-scope bank is not ({settings.in_scope_examples}, {dimension})")
        expected = (settings.out_of_scope_examples, dimension)
        if (out_of_scope.shape if out_of_scope is not None else (0, dimension)) != expected:
            raise ValueError(f"{path.name}: the out-of-scope bank is not {expected}")
        return cls(settings, in_scope, out_of_scope)
