"""Which routing policy serves, and the frozen online snapshot it serves from.

The learner publishes; every router replica follows. ``policy/current.json`` names the policy
(static or online), its revision and, for online, the signed snapshot directory. Every
promotion, rollback or snapshot refresh writes a new snapshot (if any) first and then moves the
pointer with one rename, with the revision one higher, so a replica never reads a half-written
policy and cached decisions of an older revision are never served again (the revision is part
of the route-cache key).
"""

from __future__ import annotations

import json
import logging
import shutil
import time
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from services.artifacts import write_json_atomic
from services.learner.checkpoint import LearnerSnapshot, save_snapshot

logger = logging.getLogger(__name__)

POINTER_NAME = "current.json"
KEEP_SNAPSHOTS = 3


class PolicyPointer(BaseModel):
    """The serving policy as the router replicas read it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    revision: int = Field(ge=0, description="Increases with every promotion, rollback and snapshot refresh.")
    policy: Literal["static", "online"]
    snapshot: str | None = Field(None, description="Snapshot directory name, for the online policy.")
    feature_space: str | None = Field(None, description="Identity of the feature space the snapshot reads.")
    reason: str = Field("", description="Why this policy serves (the shadow comparison that decided it).")
    published_at: float = Field(default_factory=time.time)


STATIC_START = PolicyPointer(revision=0, policy="static", reason="no online policy has been promoted")


class PolicyStore:
    """``<learner directory>/policy``: the pointer and the last few snapshots."""

    def __init__(self, directory: Path) -> None:
        self.folder = Path(directory) / "policy"

    def current(self) -> PolicyPointer:
        """The published pointer; the static policy at revision 0 when nothing was published."""
        path = self.folder / POINTER_NAME
        try:
            return PolicyPointer.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            return STATIC_START
        except (ValidationError, ValueError, OSError) as exc:
            raise ValueError(f"{path} is not a valid policy pointer: {exc}") from exc

    def snapshot_path(self, pointer: PolicyPointer) -> Path | None:
        return None if pointer.snapshot is None else self.folder / pointer.snapshot

    def publish_static(self, revision: int, reason: str) -> PolicyPointer:
        return self._move(PolicyPointer(revision=revision, policy="static", reason=reason))

    def publish_online(self, revision: int, snapshot: LearnerSnapshot, key: bytes, feature_space: str, reason: str) -> PolicyPointer:
        name = f"rev-{revision:08d}"
        save_snapshot(self.folder / name, snapshot, key, kind="routing-policy", name=name)
        return self._move(
            PolicyPointer(revision=revision, policy="online", snapshot=name, feature_space=feature_space, reason=reason)
        )

    def _move(self, pointer: PolicyPointer) -> PolicyPointer:
        write_json_atomic(self.folder / POINTER_NAME, json.loads(pointer.model_dump_json()))
        logger.info("routing policy revision %d: %s (%s)", pointer.revision, pointer.policy, pointer.reason)
        self._prune(pointer)
        return pointer

    def _prune(self, pointer: PolicyPointer) -> None:
        """Keep the last few snapshots: a replica may still be loading the previous one."""
        snapshots = sorted(path for path in self.folder.glob("rev-*") if path.is_dir())
        for path in snapshots[:-KEEP_SNAPSHOTS]:
            if path.name != pointer.snapshot:
                shutil.rmtree(path, ignore_errors=True)
