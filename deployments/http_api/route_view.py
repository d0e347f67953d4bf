"""The router version and policy revision the service serves, as the ingress sees them.

The ingress answers cache hits itself, so it must key them exactly as the router would: it
follows the same two pointers the router replicas follow (the router store's ``current`` and
the learner's policy pointer), reading only the manifest, never the model. A decision made
under another version than the one it was keyed for is not stored (``route_with_cache``), so a
swap seen by one side first costs a few uncached decisions, never a wrong answer.
"""

from __future__ import annotations

import logging
import time
from pathlib import Path

from services.artifacts import ArtifactError
from services.config import AppConfig
from services.experts.costs import resolve_costs
from services.learner.policy_store import PolicyStore
from services.router.front import RouterFront
from services.router.store import RouterStore

logger = logging.getLogger(__name__)


class RouteView:
    """Re-reads both pointers at most every ``router.watch_interval_s``: two small file reads."""

    def __init__(self, config: AppConfig) -> None:
        assert config.router is not None
        self._settings = config.router
        self._costs = resolve_costs(config)
        self._general = config.general_expert
        self._store = RouterStore.from_config(config)  # with the signing key, an unsigned manifest is not used
        self._policies = PolicyStore(Path(config.learner.directory))
        self._front: RouterFront | None = None
        self._revision = 0
        self._checked_at = float("-inf")
        self._last_error: str | None = None

    def current(self) -> tuple[RouterFront | None, int]:
        """The front of the serving router version (None: unknown, so route uncached) and the policy revision."""
        if time.monotonic() - self._checked_at >= self._settings.watch_interval_s:
            self.refresh()
        return self._front, self._revision

    def refresh(self) -> None:
        self._checked_at = time.monotonic()
        try:
            version = self._store.current_version()
            if version is None:
                self._front = None
            elif self._front is None or self._front.version != version:
                manifest = self._store.read_manifest(version)
                self._front = RouterFront(manifest, self._settings, self._costs, self._general)
            self._revision = self._policies.current().revision
            self._last_error = None
        except (ArtifactError, OSError, ValueError) as exc:
            message = f"route cache in the ingress: cannot read the serving version ({exc}); routing uncached meanwhile"
            if message != self._last_error:
                logger.warning(message)
            self._last_error = message
            self._front = None
