"""The router store: versioned artifact directories and a ``current`` pointer file.

Serving follows the pointer; ``coe router use`` moves it (pin or roll back) after checking that
the target loads; training publishes a new version and moves it. Version names are checked
before they touch the filesystem. A store opened with the artifact signing key
(:meth:`RouterStore.from_config` does so when the config names one) loads, lists as valid and
points at signed versions only.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from services.artifacts import ArtifactError, read_manifest, signing_key, verify_signature
from services.router.artifact import RouterArtifact, RouterManifest, load_router_artifact

if TYPE_CHECKING:
    from services.config import AppConfig

POINTER_NAME = "current"
VERSION_PATTERN = re.compile(r"^[0-9a-f]{16}$")


@dataclass(frozen=True)
class StoredVersion:
    version: str
    created_at: float | None
    valid: bool
    problem: str | None
    current: bool


class RouterStore:
    """Versions under ``root``; ``key`` is the artifact signing key, None when none is configured."""

    def __init__(self, root: Path, key: bytes | None = None) -> None:
        self.root = Path(root)
        self.key = key

    @classmethod
    def from_config(cls, config: "AppConfig") -> "RouterStore":
        """The config's store, with its signing key: how serving, training and the CLI open it."""
        if config.router is None:
            raise ValueError("the config has no `router` section")
        return cls(Path(config.router.store), signing_key(config))

    @property
    def pointer(self) -> Path:
        return self.root / POINTER_NAME

    def folder(self, version: str) -> Path:
        if not VERSION_PATTERN.match(version):
            raise ArtifactError(f"'{version}' is not a router version (16 hexadecimal characters)")
        return self.root / version

    def current_version(self) -> str | None:
        """The version the pointer names, or None when nothing has been published."""
        if not self.pointer.is_file():
            return None
        version = self.pointer.read_text(encoding="utf-8").strip()
        self.folder(version)  # a hand-edited pointer must still name a version
        return version

    def load(self, version: str) -> RouterArtifact:
        """One version, verified (hashes, shapes, and the signature when the store has a key)."""
        return load_router_artifact(self.folder(version), self.key)

    def read_manifest(self, version: str) -> RouterManifest:
        """A version's manifest without reading its weights: for views of it (the ingress's route
        cache) that must not trust a manifest the router itself would refuse. With a key the
        signature is checked (cheap: the manifest's bytes only); file hashes are not."""
        folder = self.folder(version)
        if self.key is not None:
            verify_signature(folder, self.key)
        manifest = read_manifest(folder, RouterManifest)
        assert isinstance(manifest, RouterManifest)
        return manifest

    def load_current(self) -> RouterArtifact:
        version = self.current_version()
        if version is None:
            raise ArtifactError(f"no router in {self.root}: train one with `coe train router`")
        return self.load(version)

    def use(self, version: str) -> RouterArtifact:
        """Point ``current`` at ``version`` once it has loaded and verified."""
        artifact = self.load(version)
        temporary = self.root / f".{POINTER_NAME}.tmp"
        temporary.write_text(version + "\n", encoding="utf-8")
        temporary.replace(self.pointer)
        return artifact

    def versions(self) -> list[StoredVersion]:
        """All versions, oldest first; broken ones are listed with their problem."""
        current = self.current_version() if self.root.is_dir() else None
        found: list[StoredVersion] = []
        for folder in sorted(self.root.iterdir()) if self.root.is_dir() else []:
            if not folder.is_dir() or not VERSION_PATTERN.match(folder.name):
                continue
            try:
                manifest = self.load(folder.name).manifest
                found.append(StoredVersion(folder.name, manifest.created_at, True, None, folder.name == current))
            except ArtifactError as exc:
                created = None
                try:
                    created = read_manifest(folder, RouterManifest).created_at
                except ArtifactError:
                    pass
                found.append(StoredVersion(folder.name, created, False, str(exc), folder.name == current))
        return sorted(found, key=lambda item: (item.created_at or 0.0, item.version))

    def prune(self, keep: int) -> list[str]:
        """Delete all but the ``keep`` newest versions; the current one is always kept."""
        if keep < 1:
            raise ValueError("--keep must be at least 1")
        versions = self.versions()
        doomed = [item.version for item in versions[: max(0, len(versions) - keep)] if not item.current]
        for version in doomed:
            shutil.rmtree(self.folder(version))
        return doomed
