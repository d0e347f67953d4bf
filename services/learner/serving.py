"""The online policy inside a router replica: a frozen, verified snapshot that follows the learner's pointer.

The replica decides statically first (the embedding, the categories, the uncertainty fallback);
when the online policy is promoted, its snapshot then picks the expert for confident requests.
Uncertain requests keep going to the general expert: the fallback is a promise to users that a
model still learning does not get to break. Every decision carries the revision it was made
under, and so does its cache key.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from services.learner.checkpoint import RoutingModel, load_snapshot
from services.learner.config import LearnerConfig
from services.learner.policy_store import STATIC_START, PolicyPointer, PolicyStore
from services.router.decision import RouteDecision

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class ServingPolicy:
    """One revision of the serving policy; immutable, so a request keeps the revision it started with."""

    pointer: PolicyPointer
    model: RoutingModel | None = None
    lock: threading.Lock | None = None

    @property
    def revision(self) -> int:
        return self.pointer.revision

    def apply(self, decision: RouteDecision, feature_space: str | None, experts: frozenset[str]) -> RouteDecision:
        """The final decision: the static one, or the online policy's expert for a confident request."""
        update: dict[str, object] = {"policy_revision": self.revision}
        if (
            self.model is not None
            and self.lock is not None
            and decision.policy == "static"
            and not decision.uncertain
            and decision.features is not None
            and feature_space == self.pointer.feature_space
        ):
            with self.lock:  # DriftMoE reuses its last forward pass, LinUCB draws ties: one prediction at a time
                expert = self.model.predict_one(np.asarray(decision.features, dtype=np.float64))
            if expert is not None and str(expert) in experts:
                update |= {"expert": str(expert), "policy": "online"}
        return decision.model_copy(update=update)


class PolicyFollower:
    """Reads the pointer; loads and verifies a new snapshot on the side; keeps the last good policy on error."""

    def __init__(self, config: LearnerConfig) -> None:
        self._config = config
        self._store = PolicyStore(Path(config.directory))
        self.current = ServingPolicy(STATIC_START)
        self._last_error: str | None = None

    def check(self) -> bool:
        """Follow the pointer; True when the serving policy changed."""
        try:
            pointer = self._store.current()
            if pointer.revision == self.current.revision and pointer.policy == self.current.pointer.policy:
                return False
            model = None
            if pointer.policy == "online":
                folder = self._store.snapshot_path(pointer)
                assert folder is not None
                model = load_snapshot(folder, self._config.hmac_key()).model
        except (ValueError, OSError, KeyError) as exc:
            message = f"keeping routing policy revision {self.current.revision}: {exc}"
            if message != self._last_error:
                logger.error(message)
            self._last_error = message
            return False
        self.current = ServingPolicy(pointer, model, threading.Lock() if model is not None else None)
        self._last_error = None
        logger.info("routing policy: revision %d, %s (%s)", pointer.revision, pointer.policy, pointer.reason)
        return True
