"""The learner's loop: read both streams, apply each entry exactly once, checkpoint, then acknowledge.

Exactly once, across crashes and restarts, rests on one ordering: an entry is acknowledged
(``XACK``) only after a checkpoint that contains its effect and records the last applied entry
id of its stream. After a restart the consumer's pending entries are delivered again; those at or
below the checkpointed position were applied already and are only acknowledged, the rest are
applied now. Nothing acknowledged was lost, and nothing is applied twice.

An entry whose application fails (an error in river or torch) stops the read batch there: the
position stays before it and the entries from it on are read again, from this consumer's
pending list, after a pause. After ``max_attempts`` failures the entry is moved to the
dead-letter stream with its error, and only then passed. Publishing a policy is a consequence
of applied entries, not part of applying one: when it fails it is tried again later, and the
entries stay applied.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from pydantic import ValidationError

from services.artifacts import ArtifactError
from services.cache.config import redacted
from services.cache.connection import sync_client
from services.config import AppConfig
from services.learner.checkpoint import LearnerSnapshot, load_snapshot, save_snapshot
from services.learner.events import EVENT_FIELD, FeedbackEvent, ShadowRequest
from services.learner.features import FeatureSpace, RoutingFeatures, feature_space
from services.learner.online import RoutingLearner
from services.learner.policy_store import PolicyStore
from services.learner.shadow import RewardModelWatcher, ShadowEvaluator, ShadowUnavailable
from services.router.store import RouterStore

logger = logging.getLogger(__name__)

CHECKPOINT_DIR = "checkpoint"
START_ID = "0-0"


def entry_order(entry_id: str | bytes) -> tuple[int, int]:
    """Stream ids compare as (milliseconds, sequence), not as strings."""
    text = entry_id.decode() if isinstance(entry_id, bytes) else entry_id
    milliseconds, _, sequence = text.partition("-")
    return int(milliseconds), int(sequence or 0)


class EntryFailed(RuntimeError):
    """Applying a stream entry raised; it stays pending and is read again after a pause."""


class LearnerStateLost(RuntimeError):
    """Entries were acknowledged, but the checkpoint holding their effect is gone."""


class LearnerService:
    """One learner: its model, its stream positions, and the policy it publishes."""

    def __init__(
        self, config: AppConfig, *, evaluator: ShadowEvaluator | RewardModelWatcher | None = None, redis: Any = None
    ) -> None:
        if config.router is None:
            raise ValueError("the learner adapts a router, and the config has no `router` section")
        self.config = config
        self.settings = config.learner
        self.key = self.settings.hmac_key()
        self.directory = Path(self.settings.directory)
        self.redis = redis or sync_client(config.cache, timeout_s=self.settings.block_ms / 1000 + 5)
        self.router_store = RouterStore.from_config(config)
        self.policies = PolicyStore(self.directory)
        self.evaluator = evaluator
        self.streams = (self.settings.feedback.stream, self.settings.shadow.stream)
        self.experts = sorted(expert.name for expert in config.experts)
        self.positions: dict[str, str] = dict.fromkeys(self.streams, START_ID)
        self.unacked: dict[str, dict[str, None]] = {stream: {} for stream in self.streams}  # ordered sets of ids
        self._attempts: dict[tuple[str, str], int] = {}  # failed applications per entry, this life
        self._publish_failing = False
        self.applied_since_checkpoint = 0
        self.last_checkpoint_at: float | None = None
        self._last_checkpoint_clock = time.monotonic()
        self._space_by_version: dict[str, FeatureSpace | None] = {}  # None: that version does not load
        self._pending_cursor: dict[str, str] | None = dict.fromkeys(self.streams, START_ID)  # None once recovered
        self._last_space_check = time.monotonic()
        self.resets: list[str] = []
        # The loop's thread applies; status() is asked from another. Held while applying, never
        # while a read blocks: a lock released and retaken at once would starve status() for good.
        self._lock = threading.RLock()
        self.learner = self._load_or_start(self._current_space())
        self._ensure_groups()

    # ------------------------------------------------------------------ state
    @property
    def checkpoint_path(self) -> Path:
        return self.directory / CHECKPOINT_DIR

    def _current_space(self) -> FeatureSpace:
        version = self.router_store.current_version()
        space = self._space_of(version) if version is not None else None
        if space is None:  # say why, as the router replicas would
            return feature_space(self.router_store.load_current(), self.settings)
        return space

    def _space_of(self, version: str) -> FeatureSpace | None:
        """The feature space of a stored router version, read once per version."""
        if version not in self._space_by_version:
            try:
                self._space_by_version[version] = feature_space(self.router_store.load(version), self.settings)
            except (ArtifactError, OSError, ValueError):
                self._space_by_version[version] = None
        return self._space_by_version[version]

    def _fresh(self, space: FeatureSpace) -> RoutingLearner:
        learner = RoutingLearner(self.experts, space, self.settings)
        pointer = self.policies.current()
        learner.revision = pointer.revision
        learner.serving = pointer.policy if pointer.feature_space == space.identity else "static"
        return learner

    def _load_or_start(self, space: FeatureSpace) -> RoutingLearner:
        if not self.checkpoint_path.exists():
            self._refuse_if_acknowledged_without_checkpoint()
            logger.info("learner: no checkpoint in %s; starting a new learner", self.checkpoint_path)
            return self._fresh(space)
        snapshot = load_snapshot(self.checkpoint_path, self.key)  # refuses a checkpoint that does not verify
        state = snapshot.state
        self.positions.update(state["positions"])
        self.last_checkpoint_at = state.get("saved_at")
        stored_space = state["learner"]["feature_space"]
        projection = snapshot.extra_tensors.get("projection")
        expected = torch.from_numpy(RoutingFeatures(space).projection)
        changes = self._space_changes(stored_space, space, state["learner"]["experts"])
        if projection is None or tuple(projection.shape) != tuple(expected.shape) or not torch.equal(projection, expected):
            changes.append("the feature projection")
        if snapshot.model.kind != self.settings.policy:
            changes.append(f"routing policy ({snapshot.model.kind}; learner.policy is now {self.settings.policy})")
        if changes:
            return self._reset(space, f"the checkpoint was made for another {', '.join(changes)}")
        learner = RoutingLearner.from_state(state["learner"], space, self.settings, snapshot.model)
        learner.revision = max(learner.revision, self.policies.current().revision)
        logger.info(
            "learner: resumed from %s (positions %s, serving %s at revision %d)",
            self.checkpoint_path, self.positions, learner.serving, learner.revision,
        )
        return learner

    def _refuse_if_acknowledged_without_checkpoint(self) -> None:
        """Starting fresh would silently drop what acknowledged entries taught; say so instead."""
        acknowledged = {stream: count for stream in self.streams if (count := self._acknowledged(stream))}
        if acknowledged:
            described = ", ".join(f"{count} of {stream}" for stream, count in acknowledged.items())
            raise LearnerStateLost(
                f"the learner's consumer group '{self.settings.consumer_group}' has acknowledged entries ({described}), "
                f"but there is no checkpoint at {self.checkpoint_path}: what those entries taught is gone. Restore the "
                "checkpoint folder, or run `coe learner forget --yes` to start over (it deletes the consumer group; "
                "the entries still in the streams are then learned again)"
            )

    def _acknowledged(self, stream: str) -> int:
        """Entries of ``stream`` this group read and acknowledged (read minus pending)."""
        import redis

        try:
            groups = self.redis.xinfo_groups(stream)
        except redis.ResponseError:  # no such stream: nothing was ever read
            return 0
        for group in groups:
            name = group.get("name")
            if (name.decode() if isinstance(name, bytes) else name) != self.settings.consumer_group:
                continue
            read, pending = group.get("entries-read"), int(group.get("pending") or 0)
            if read is None:  # Redis cannot tell (the stream was trimmed or deleted from): judge by the cursor
                last = group.get("last-delivered-id") or b"0-0"
                return int(entry_order(last) != (0, 0) and pending == 0)
            return max(int(read) - pending, 0)
        return 0

    def _space_changes(self, stored: dict[str, Any], space: FeatureSpace, experts: list[str]) -> list[str]:
        changes = []
        if stored.get("taxonomy") != list(space.taxonomy):
            changes.append("taxonomy")
        if stored.get("embedder") != space.embedder or stored.get("embedding_dim") != space.embedding_dim:
            changes.append("embedder")
        if (stored.get("projection_dim"), stored.get("projection_seed")) != (space.projection_dim, space.projection_seed):
            changes.append("projection width or seed")
        if experts != self.experts:
            changes.append("set of experts")
        return changes

    def _reset(self, space: FeatureSpace, why: str) -> RoutingLearner:
        message = f"learner reset: {why}; the online policy starts over and the static router serves"
        logger.warning(message)
        self.resets.append(message)
        learner = RoutingLearner(self.experts, space, self.settings)
        pointer = self.policies.current()
        learner.revision = pointer.revision
        if pointer.policy == "online":
            learner.revision = self.policies.publish_static(pointer.revision + 1, why).revision
        return learner

    def check_router(self) -> None:
        """A router artifact with another taxonomy or embedder makes the learner's inputs meaningless: reset."""
        space = self._current_space()
        if space.identity == self.learner.space.identity:
            return
        changes = self._space_changes(self.learner.space.describe(), space, self.learner.experts) or ["feature space"]
        self.learner = self._reset(space, f"router {self.router_store.current_version()} has another {', '.join(changes)}")

    # ------------------------------------------------------------------ streams
    def _ensure_groups(self) -> None:
        import redis

        for stream in self.streams:
            try:
                self.redis.xgroup_create(stream, self.settings.consumer_group, id="0", mkstream=True)
            except redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise

    def _recreate_groups(self) -> None:
        """After the streams vanished, their pending lists and ids went with them: start reading afresh."""
        with self._lock:
            self._ensure_groups()
            self.unacked = {stream: {} for stream in self.streams}
            self._attempts.clear()
            self._pending_cursor = dict.fromkeys(self.streams, START_ID)

    def _read(self, block_ms: int | None) -> list[tuple[str, str, dict[bytes, bytes] | None]]:
        """The next entries: this consumer's pending ones first (after a restart), then new ones."""
        group, consumer, count = self.settings.consumer_group, self.settings.consumer, self.settings.read_count
        if self._pending_cursor is not None:
            response = self.redis.xreadgroup(group, consumer, dict(self._pending_cursor), count=count)
            entries = list(_flatten(response))
            if entries:
                for stream, entry_id, _ in entries:
                    self._pending_cursor[stream] = entry_id
                return entries
            self._pending_cursor = None
            logger.info("learner: pending entries replayed; reading new entries")
        response = self.redis.xreadgroup(group, consumer, dict.fromkeys(self.streams, ">"), count=count, block=block_ms)
        return list(_flatten(response))

    def step(self, block_ms: int | None = None) -> int:
        """Read once and apply what came; returns the number of entries applied (replays not counted)."""
        if time.monotonic() - self._last_space_check >= self.config.router.watch_interval_s:  # type: ignore[union-attr]
            self._last_space_check = time.monotonic()
            with self._lock:
                self.check_router()
        if isinstance(self.evaluator, RewardModelWatcher):
            self.evaluator.poll()  # so the status says when a reward model appeared, shadow traffic or not
        entries = self._read(block_ms)  # may block for block_ms: without the lock
        with self._lock:
            return self._apply_read(entries)

    def _apply_read(self, entries: list[tuple[str, str, dict[bytes, bytes] | None]]) -> int:
        applied = 0
        for stream, entry_id, fields in entries:
            if entry_order(entry_id) <= entry_order(self.positions[stream]):
                self.unacked[stream][entry_id] = None  # applied before the restart; acknowledge at the next checkpoint
                continue
            try:
                self._apply(stream, entry_id, fields)
            except Exception as exc:
                if not self._dead_lettered(stream, entry_id, fields, exc):
                    raise EntryFailed(f"entry {entry_id} of {stream} failed: {exc.__class__.__name__}: {exc}") from exc
            else:
                applied += 1
            self._attempts.pop((stream, entry_id), None)
            self.positions[stream] = entry_id
            self.unacked[stream][entry_id] = None
            self.applied_since_checkpoint += 1
            self._publish_if_due()
        if self._checkpoint_due():
            self.checkpoint()
        return applied

    def _dead_lettered(self, stream: str, entry_id: str, fields: dict[bytes, bytes] | None, exc: Exception) -> bool:
        """Count a failed application; after ``max_attempts`` move the entry to the dead-letter stream.

        Until then (or when the move itself fails) the entries from this one on are read again
        from the pending list, so the position never passes an entry that was not dealt with.
        """
        attempts = self._attempts.get((stream, entry_id), 0) + 1
        self._attempts[(stream, entry_id)] = attempts
        if attempts < self.settings.max_attempts:
            logger.warning("learner: entry %s of %s failed (attempt %d of %d): %s: %s",
                           entry_id, stream, attempts, self.settings.max_attempts, exc.__class__.__name__, exc)
            self._read_again_from_positions()
            return False
        error = f"{exc.__class__.__name__}: {exc}"
        letter = {"stream": stream, "id": entry_id, "error": error[:2000], "attempts": str(attempts), "failed_at": repr(time.time())}
        if fields and EVENT_FIELD.encode() in fields:
            letter[EVENT_FIELD] = fields[EVENT_FIELD.encode()]
        try:
            self.redis.xadd(self.settings.dead_letter_stream, letter)
        except Exception:
            self._read_again_from_positions()
            raise
        logger.error("learner: entry %s of %s failed %d times and was moved to %s: %s",
                     entry_id, stream, attempts, self.settings.dead_letter_stream, error)
        self.learner.count("dead_lettered")
        return True

    def _read_again_from_positions(self) -> None:
        """The next read replays this consumer's pending entries past each stream's position."""
        self._pending_cursor = dict(self.positions)

    def _apply(self, stream: str, entry_id: str, fields: dict[bytes, bytes] | None) -> None:
        """Apply one entry; a malformed or trimmed one is counted and skipped, never fatal."""
        if not fields or EVENT_FIELD.encode() not in fields:
            self.learner.count("entry_missing")
            return
        raw = fields[EVENT_FIELD.encode()]
        try:
            if stream == self.settings.feedback.stream:
                event = FeedbackEvent.model_validate_json(raw)
                if self._stale(event.record.decision.router_version):
                    self.learner.count("feedback_stale_router")
                    return
                outcome = self.learner.apply_feedback(event)
            else:
                request = ShadowRequest.model_validate_json(raw)
                if self._stale(request.record.decision.router_version):
                    self.learner.count("shadow_stale_router")
                    return
                outcome = self._apply_shadow(request)
        except (ValidationError, ValueError) as exc:
            logger.warning("learner: entry %s of %s is malformed and skipped: %s", entry_id, stream, exc)
            self.learner.count("entry_malformed")
            return
        logger.debug("learner: %s %s → %s", stream, entry_id, outcome)

    def _apply_shadow(self, request: ShadowRequest) -> str:
        if self.evaluator is None:
            return self.learner.count("shadow_without_evaluator")
        try:
            outcome = self.evaluator.evaluate(request, self.learner)
        except ShadowUnavailable:
            return self.learner.count("shadow_without_reward_model")
        except Exception as exc:  # the service or an expert is away: this sample is lost, the learner is not
            logger.warning("learner: shadow evaluation of %s failed: %s", request.completion_id, exc)
            return self.learner.count("shadow_failed")
        if outcome is None:
            return self.learner.count("shadow_without_features")
        return self.learner.apply_shadow(outcome)

    def _stale(self, router_version: str | None) -> bool:
        """Features made by a router of another feature space cannot teach this learner."""
        if router_version is None:
            return False
        space = self._space_of(router_version)
        return space is None or space.identity != self.learner.space.identity

    # ------------------------------------------------------------------ policy
    def _publish_if_due(self) -> None:
        """Publish a policy change; a failure (the folder unwritable, the disk full) is retried later."""
        try:
            self._maybe_publish()
        except Exception as exc:
            self.learner.count("publish_failed")
            if not self._publish_failing:
                logger.error("learner: publishing the routing policy failed (%s: %s); retrying after later entries",
                             exc.__class__.__name__, exc)
            self._publish_failing = True
            return
        self._publish_failing = False

    def _maybe_publish(self) -> None:
        change, reason = self.learner.policy_change()
        if change is None:
            return
        revision = max(self.learner.revision, self.policies.current().revision) + 1
        if change == "rollback":
            self.policies.publish_static(revision, reason)
        else:
            snapshot = LearnerSnapshot(model=self.learner.model, state={"feature_space": self.learner.space.describe()})
            self.policies.publish_online(revision, snapshot, self.key, self.learner.space.identity, reason)
        self.learner.changed(change, revision)

    # ------------------------------------------------------------------ checkpoints
    def _checkpoint_due(self) -> bool:
        if not self.applied_since_checkpoint and not any(self.unacked.values()):
            return False
        return (
            self.applied_since_checkpoint >= self.settings.checkpoint_every
            or time.monotonic() - self._last_checkpoint_clock >= self.settings.checkpoint_interval_s
        )

    def checkpoint(self) -> None:
        """Save the state, then acknowledge every entry it covers."""
        self.save_checkpoint()
        self.acknowledge()

    def save_checkpoint(self) -> None:
        """Write the signed checkpoint (a crash after this and before ``acknowledge`` replays, harmlessly)."""
        saved_at = time.time()
        state = {"learner": self.learner.state(), "positions": dict(self.positions), "saved_at": saved_at}
        projection = torch.from_numpy(np.ascontiguousarray(RoutingFeatures(self.learner.space).projection))
        save_snapshot(
            self.checkpoint_path,
            LearnerSnapshot(model=self.learner.model, state=state, extra_tensors={"projection": projection}),
            self.key,
            kind="learner-checkpoint",
            name=self.settings.consumer,
            durable=True,
        )
        self.applied_since_checkpoint = 0
        self.last_checkpoint_at = saved_at
        self._last_checkpoint_clock = time.monotonic()

    def acknowledge(self) -> None:
        """``XACK`` what the last checkpoint covers."""
        for stream, ids in self.unacked.items():
            if ids:
                self.redis.xack(stream, self.settings.consumer_group, *ids)
                ids.clear()

    # ------------------------------------------------------------------ running
    def drain(self) -> int:
        """Apply everything waiting now (replays first), checkpoint, acknowledge; returns entries applied."""
        applied = 0
        while True:
            count = self.step(block_ms=None)
            applied += count
            if not count and self._pending_cursor is None:
                break  # the last read, of new entries, found none
        self.checkpoint()
        return applied

    def run(self, stop: threading.Event) -> None:
        """Until ``stop``: step, riding out Redis outages; checkpoint on the way out."""
        import redis

        url = redacted(self.config.cache.resolved_url())
        failing = False
        while not stop.is_set():
            try:
                self.step(block_ms=self.settings.block_ms)
                if failing:
                    logger.info("learner: Redis at %s answers again", url)
                failing = False
            except (redis.ConnectionError, redis.TimeoutError) as exc:
                if not failing:
                    logger.warning("learner: Redis at %s is unavailable (%s); retrying", url, exc.__class__.__name__)
                failing = True
                stop.wait(1.0)
            except redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    logger.exception("learner: Redis refused a command; retrying")
                    stop.wait(1.0)
                    continue
                # The streams were deleted or Redis came back empty: recreate the group and carry on.
                logger.warning("learner: the consumer group is gone from %s (%s); creating it again", url, exc)
                self._recreate_groups()
            except EntryFailed:  # logged where it failed; it is read again after the pause
                stop.wait(self.settings.retry_pause_s)
            except Exception:  # the loop must outlive any one bad step; the entries stay pending
                logger.exception("learner: step failed; retrying")
                stop.wait(self.settings.retry_pause_s)
        try:
            self.checkpoint()
        except Exception:  # the last checkpoint failed: entries stay pending and are replayed, not lost
            logger.exception("learner: checkpoint on shutdown failed")

    def status(self) -> dict[str, Any]:
        with self._lock:
            return self._status()

    def _status(self) -> dict[str, Any]:
        learner = self.learner
        return {
            "policy": self.settings.policy,
            "serving": learner.serving,
            "revision": learner.revision,
            "lead": learner.lead(),
            "shadow_events_in_window": len(learner.window),
            "counts": dict(learner.counts),
            "drifts_detected": learner.model.drifts_detected,
            "tree_resets": learner.model.tree_resets,
            "router_steps": learner.model.router_steps,
            "positions": dict(self.positions),
            "unacknowledged": sum(len(ids) for ids in self.unacked.values()),
            "dead_letters": self._dead_letter_count(),
            "last_checkpoint_at": self.last_checkpoint_at,
            "feature_space": learner.space.describe(),
            "resets": list(self.resets),
            "shadow_evaluation": self._shadow_status(),
        }

    def _dead_letter_count(self) -> int | None:
        """Entries waiting in the dead-letter stream (None while Redis does not answer)."""
        try:
            return int(self.redis.xlen(self.settings.dead_letter_stream))
        except Exception:
            return None

    def _shadow_status(self) -> dict[str, Any]:
        if isinstance(self.evaluator, RewardModelWatcher):
            return self.evaluator.status()
        if self.evaluator is None:
            return {"state": "off", "reward_model": None, "reason": "the learner was started without a shadow evaluator"}
        return {"state": "ready", "reward_model": None, "reason": None}


def _flatten(response: Iterable[Any] | None) -> Iterable[tuple[str, str, dict[bytes, bytes] | None]]:
    for stream, entries in response or []:
        name = stream.decode() if isinstance(stream, bytes) else stream
        for entry_id, fields in entries:
            yield name, entry_id.decode() if isinstance(entry_id, bytes) else entry_id, fields


def describe_status(status: dict[str, Any]) -> str:
    return json.dumps(status, indent=2, sort_keys=True, default=str)
