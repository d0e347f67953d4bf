"""DriftMoE behind river's classifier interface, so river streams and evaluators can drive it.

river hands features over as dicts; the router needs a fixed-length vector. The adapter fixes
the key order at the first instance (or takes it from ``features``) and reads every later dict
in that order, with absent keys as 0.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np
from river import base

from services.learner.config import DriftMoESettings
from services.learner.driftmoe import DriftMoE


class DriftMoEClassifier(base.Classifier):
    """river ``Classifier`` over a lazily built ``DriftMoE``.

    ``predict_one`` followed by ``learn_one`` on the same ``x`` costs one forward pass: the
    learner reuses the scores of the last input it saw until it learns something.
    """

    def __init__(self, settings: DriftMoESettings | None = None, features: Sequence[Hashable] | None = None) -> None:
        self.settings = settings
        self.features = features
        self.learner: DriftMoE | None = None
        self._keys: list[Hashable] | None = list(features) if features is not None else None

    @property
    def _multiclass(self) -> bool:
        return True

    def learn_one(self, x: dict[Hashable, Any], y: Hashable) -> None:
        self._learner_for(x).learn_one(self._vector(x), y)

    def predict_one(self, x: dict[Hashable, Any], **kwargs: Any) -> Hashable | None:
        return self._learner_for(x).predict_one(self._vector(x))

    def predict_proba_one(self, x: dict[Hashable, Any], **kwargs: Any) -> dict[Hashable, float]:
        return self._learner_for(x).predict_proba_one(self._vector(x))

    def experts_one(self, x: dict[Hashable, Any]) -> tuple[np.ndarray, list[Hashable | None]]:
        """The router's weights over the trees and each tree's prediction, for ``x``.

        After ``predict_one(x)`` this costs no second pass; call it before ``learn_one(x, y)``.
        """
        learner, vector = self._learner_for(x), self._vector(x)
        return learner.router_weights(vector), learner.tree_predictions(vector)

    def _learner_for(self, x: dict[Hashable, Any]) -> DriftMoE:
        if self.learner is None:
            if self._keys is None:
                self._keys = _ordered_keys(x)
            self.learner = DriftMoE(len(self._keys), self.settings)
        return self.learner

    def _vector(self, x: dict[Hashable, Any]) -> np.ndarray:
        assert self._keys is not None
        return np.fromiter((float(x.get(key, 0.0)) for key in self._keys), dtype=np.float64, count=len(self._keys))


def _ordered_keys(x: dict[Hashable, Any]) -> list[Hashable]:
    """Sorted keys when they sort (ints, strings), else the first dict's own order."""
    try:
        return sorted(x)
    except TypeError:
        return list(x)
