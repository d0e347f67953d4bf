"""The learner's input x: a fixed random projection of the embedding, then the stage-1 probabilities.

The router replica computes x when it decides (the embedding is at hand only then) and it travels
with the decision, through the route cache, into the completion record. The learner never sees
a prompt's embedding again, so both sides must agree on the projection: it is a pure function of
(seed, embedding width, projection width), and the learner keeps a copy in its state to check.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from services.learner.config import LearnerConfig
    from services.router.artifact import RouterArtifact

FEATURE_DECIMALS = 5  # enough for a tree split, short enough for a compact record


def random_projection(embedding_dim: int, projection_dim: int, seed: int) -> np.ndarray:
    """Gaussian (Johnson–Lindenstrauss) projection, shape (projection_dim, embedding_dim)."""
    generator = np.random.default_rng(seed)
    return (generator.standard_normal((projection_dim, embedding_dim)) / np.sqrt(projection_dim)).astype(np.float32)


@dataclass(frozen=True)
class FeatureSpace:
    """What x means: which router produced the parts, and how wide each part is.

    Two feature spaces with different identities make incompatible vectors; a learner trained
    in one must start over in the other.
    """

    embedder: str
    taxonomy: tuple[str, ...]
    embedding_dim: int
    projection_dim: int
    projection_seed: int

    @property
    def dimension(self) -> int:
        return self.projection_dim + len(self.taxonomy)

    @property
    def identity(self) -> str:
        material = repr((self.embedder, self.taxonomy, self.embedding_dim, self.projection_dim, self.projection_seed))
        return hashlib.sha256(material.encode("utf-8")).hexdigest()[:16]

    def describe(self) -> dict[str, object]:
        return {
            "embedder": self.embedder,
            "taxonomy": list(self.taxonomy),
            "embedding_dim": self.embedding_dim,
            "projection_dim": self.projection_dim,
            "projection_seed": self.projection_seed,
            "identity": self.identity,
        }


class RoutingFeatures:
    """Turns a batch of (embedding, category probabilities) into learner inputs."""

    def __init__(self, space: FeatureSpace) -> None:
        self.space = space
        self.projection = random_projection(space.embedding_dim, space.projection_dim, space.projection_seed)

    def vectors(self, embeddings: np.ndarray, probabilities: np.ndarray) -> np.ndarray:
        """(batch, embedding_dim) and (batch, categories) → (batch, projection_dim + categories)."""
        projected = np.asarray(embeddings, dtype=np.float32) @ self.projection.T
        return np.round(np.hstack([projected, np.asarray(probabilities, dtype=np.float32)]), FEATURE_DECIMALS)


def feature_space(artifact: RouterArtifact, learner: LearnerConfig) -> FeatureSpace:
    """The feature space of routers built from ``artifact``, read off its manifest alone.

    A bundled embedder is identified by the version that bundles it, as the router does: each
    retrained embedder embeds differently, so the learner starts over with it.
    """
    manifest = artifact.manifest
    embedder = manifest.embedder if artifact.bundled_embedder is None else f"{manifest.embedder}@{manifest.version}"
    return FeatureSpace(
        embedder=embedder,
        taxonomy=tuple(manifest.taxonomy),
        embedding_dim=manifest.embedding_dimension,
        projection_dim=learner.projection_dim,
        projection_seed=learner.projection_seed,
    )
