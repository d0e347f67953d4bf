"""Build a :class:`StaticRouter` for an artifact, reusing the embedder when it has not changed."""

from __future__ import annotations

from services.config import AppConfig
from services.experts.costs import resolve_costs
from services.learner.features import RoutingFeatures, feature_space
from services.router.artifact import RouterArtifact
from services.router.config import EmbedderSource
from services.router.embedder import Embedder
from services.router.pipeline import StaticRouter


class RouterFactory:
    """Holds what every router version shares: settings, expert costs and the loaded embedder."""

    def __init__(self, config: AppConfig) -> None:
        if config.router is None:
            raise ValueError("the config has no `router` section")
        self._settings = config.router
        self._costs = resolve_costs(config)
        self._general = config.general_expert
        self._learner = config.learner
        self._embedder: Embedder | None = None

    def build(self, artifact: RouterArtifact) -> StaticRouter:
        """A router for ``artifact``; its embedder is the configured one or the one it bundles."""
        bundled = artifact.bundled_embedder
        if bundled is not None:
            # Each version bundles its own trained embedder: identify it by version, not by name.
            reference = f"{artifact.manifest.embedder}@{artifact.version}"
            if self._embedder is None or self._embedder.reference != reference:
                self._embedder = Embedder(
                    EmbedderSource(path=str(bundled)),
                    reference=reference,
                    backend=self._settings.embedding_backend,
                    threads=self._settings.batching.torch_threads,
                )
        elif self._embedder is None or self._embedder.reference != artifact.manifest.embedder:
            self._embedder = Embedder(self._settings.embedder)
        return StaticRouter(artifact, self._embedder, self._settings, self._costs, self._general, self.features_for(artifact))

    def features_for(self, artifact: RouterArtifact) -> RoutingFeatures:
        return RoutingFeatures(feature_space(artifact, self._learner))
