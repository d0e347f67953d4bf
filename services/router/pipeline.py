"""The static two-stage router: routing text → embedding → category → expert.

``prepare`` checks one request (cheap, per request); ``decide`` runs a batch of prepared
requests through one embedding pass. Serving (one request at a time, batched by Serve), the
CLI and the benchmarks all go through these two methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping

import numpy as np

from services.router.artifact import RouterArtifact
from services.router.config import RouterConfig
from services.router.decision import RouteDecision, RoutingKnobs
from services.learner.features import RoutingFeatures
from services.router.embedder import Embedder
from services.router.front import PreparedQuery, RouterFront
from services.router.ood import REASON as OUT_OF_DISTRIBUTION
from services.router.stages import CategoryClassifier, ExpertTable, entropy

__all__ = ["EmbeddedTexts", "PreparedQuery", "StaticRouter"]


@dataclass(frozen=True)
class EmbeddedTexts:
    embeddings: np.ndarray  # (batch, dimension)
    too_long: list[bool]  # beyond the embedder's window, so cut


class StaticRouter:
    """One artifact version, ready to decide. Immutable: a new version is a new router."""

    def __init__(
        self,
        artifact: RouterArtifact,
        embedder: Embedder,
        settings: RouterConfig,
        costs: dict[str, float],
        general_expert: str,
        features: RoutingFeatures | None = None,
    ) -> None:
        manifest = artifact.manifest
        expected = manifest.embedder if artifact.bundled_embedder is None else f"{manifest.embedder}@{manifest.version}"
        if embedder.reference != expected or embedder.dimension != manifest.embedding_dimension:
            raise ValueError(
                f"router {manifest.version} was trained on embedder {manifest.embedder} "
                f"({manifest.embedding_dimension}-d), not {embedder.reference} ({embedder.dimension}-d)"
            )
        self.artifact = artifact
        self.version = manifest.version
        self.front = RouterFront(manifest, settings, costs, general_expert)
        self._embedder = embedder
        self._classifier = CategoryClassifier(artifact)
        self._ood = artifact.ood  # None for versions from before the check
        self.table = ExpertTable(manifest.scores, costs, manifest.category_shares, general_expert, settings.budget)
        self.general_expert = general_expert
        self.features = features

    @property
    def embedder(self) -> Embedder:
        return self._embedder

    def expert_for(self, category: str) -> str:
        """The expert a confident decision for ``category`` gets with the configured knobs."""
        ranked = self.table.rank(category, self.front.cost_weight)
        return ranked[0].expert if ranked else self.general_expert

    def prepare(self, messages: Iterable[Mapping[str, str]], knobs: RoutingKnobs | None = None) -> PreparedQuery:
        """Routing text of one request; an empty one is an :class:`InvalidRequestError`."""
        return self.front.prepare(messages, knobs)

    def cache_inputs(self, query: PreparedQuery) -> tuple[object, ...]:
        return self.front.cache_inputs(query)

    def decide(self, queries: list[PreparedQuery]) -> list[RouteDecision]:
        return self.decide_embedded(queries, self.embed(queries))

    def embed(self, queries: list[PreparedQuery]) -> EmbeddedTexts:
        """The one expensive step, apart: knobs do not change it, so a sweep over them embeds once."""
        texts = [query.text for query in queries]
        return EmbeddedTexts(self._embedder.encode(texts), self._embedder.too_long(texts))

    def decide_embedded(self, queries: list[PreparedQuery], embedded: EmbeddedTexts) -> list[RouteDecision]:
        """Decisions for ``queries`` whose routing texts ``embed`` has already encoded, in order."""
        if len(embedded.too_long) != len(queries):
            raise ValueError(f"{len(queries)} queries but {len(embedded.too_long)} embedded texts")
        embeddings, too_long = embedded.embeddings, embedded.too_long
        probabilities = self._classifier.probabilities(embeddings)  # (batch, categories)
        learner_inputs = self.features.vectors(embeddings, probabilities) if self.features is not None else None
        entropies = entropy(probabilities)
        if self._ood is not None:
            ood_scores, outside = self._ood.flags(embeddings)
        else:
            ood_scores, outside = [None] * len(queries), [False] * len(queries)
        categories = self._classifier.categories
        decisions = []
        for index, (query, row, row_entropy, long) in enumerate(zip(queries, probabilities, entropies, too_long)):
            top = int(row.argmax())
            confidence = float(row[top])
            cost_weight, tau = self.front.knobs_of(query)
            ranked = self.table.rank(categories[top], cost_weight)
            reason = None
            if not ranked:  # the version scores this category only for experts this config lacks
                reason = f"no configured expert has a score for {categories[top]}: the general expert answers"
            elif outside[index]:
                reason = OUT_OF_DISTRIBUTION  # far from every training prompt: the category means little
            elif confidence < tau:
                reason = f"confidence {confidence:.3f} is below τ={tau:.3f}: the general expert answers"
            elif row_entropy > self.front.entropy_bound:
                reason = f"entropy {row_entropy:.3f} is above the bound {self.front.entropy_bound:.3f}: the general expert answers"
            expert = self.general_expert if reason else ranked[0].expert
            score = ood_scores[index]
            decisions.append(
                RouteDecision(
                    expert=expert,
                    policy="static",
                    category=categories[top],
                    probabilities={name: round(float(p), 6) for name, p in zip(categories, row)},
                    confidence=round(confidence, 6),
                    ranked=ranked,
                    uncertain=reason is not None,
                    reason=reason,
                    ood_score=None if score is None else round(float(score), 6),
                    router_version=self.version,
                    truncated=query.clipped or long,
                    features=None if learner_inputs is None else tuple(float(v) for v in learner_inputs[index]),
                )
            )
        return decisions
