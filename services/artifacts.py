"""The one artifact format: a directory of safetensors/JSON files plus ``manifest.json``.

Training jobs write artifacts and serving reads them; both go through this module, so an
artifact is always written completely (to a temporary directory, then renamed) and always says
what it is, which version, and what produced it.

Trust. The manifest records the sha256 of every file, so checking the manifest checks the whole
artifact. Hashes alone catch corruption, not a deliberate edit (whoever can change a file can
change its recorded hash too), so with a signing key the manifest also carries an HMAC-SHA256 of
its exact bytes in ``manifest.hmac``: :func:`write_manifest` signs when given the key and
:func:`verify_artifact` refuses an unsigned or wrongly signed artifact before reading any payload.
This is the one place signatures are made and checked (router versions, reward models, converted
weights, learner checkpoints alike).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator

from pydantic import BaseModel, ConfigDict, Field

if TYPE_CHECKING:
    from services.config import AppConfig, ArtifactsConfig

MANIFEST_NAME = "manifest.json"
SIGNATURE_NAME = "manifest.hmac"
FORMAT_VERSION = 1
MIN_KEY_BYTES = 32  # SHA-256's output size: a shorter key is weaker than the HMAC it keys (and is usually a password)


class ArtifactError(ValueError):
    """An artifact is missing, partial, corrupt, unsigned or of an unknown format; the message says which."""


class SigningKeyError(ValueError):
    """The configured key is unset or too short: a configuration problem, not a bad artifact.

    Kept apart from :class:`ArtifactError` so that code which skips a broken artifact (listing
    versions, keeping the serving router) does not mistake a missing key for one; it stops the process.
    """


class ArtifactManifest(BaseModel):
    """What an artifact is, where it came from, and the sha256 of every file it consists of."""

    model_config = ConfigDict(extra="forbid")

    format_version: int = Field(FORMAT_VERSION, description="Layout version of the artifact directory.")
    kind: str = Field(description="Artifact kind, e.g. 'lora-adapter' or 'router'.")
    name: str = Field(description="Name of what the artifact serves (expert, router).")
    version: str = Field(description="Version string; for routers a content hash.")
    created_at: float = Field(default_factory=time.time)
    base: str | None = Field(None, description="Model the artifact applies to, if any.")
    files: dict[str, str] = Field(default_factory=dict, description="Payload file name -> sha256.")
    data: dict[str, Any] = Field(default_factory=dict, description="Training data files and their sha256.")
    training: dict[str, Any] = Field(default_factory=dict, description="Hyper-parameters used.")
    metrics: dict[str, Any] = Field(default_factory=dict, description="Evaluation figures at creation.")


def new_version() -> str:
    """A sortable version string (UTC time to the millisecond)."""
    now = time.time()
    return time.strftime("%Y%m%dT%H%M%S", time.gmtime(now)) + f"{int(now * 1000) % 1000:03d}Z"


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def write_json_atomic(path: Path, payload: Any) -> None:
    """Write JSON to a temporary file beside ``path`` and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(payload, handle, indent=2, sort_keys=True)
            handle.write("\n")
        os.replace(temporary, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(temporary)
        raise


@contextlib.contextmanager
def artifact_directory(destination: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success it replaces ``destination`` in one rename.

    A crash or error leaves the previous artifact untouched and no half-written one behind.
    """
    destination = destination.resolve()
    destination.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=destination.parent, prefix=f".{destination.name}.", suffix=".tmp"))
    try:
        yield staging
        _make_readable(staging)
        retired = None
        if destination.exists():
            retired = destination.with_name(f".{destination.name}.old-{os.getpid()}")
            os.replace(destination, retired)
        os.replace(staging, destination)
        if retired is not None:
            shutil.rmtree(retired, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


@contextlib.contextmanager
def durable_directory(destination: Path) -> Iterator[Path]:
    """Yield a temporary directory; on success ``destination`` points to it after one atomic step.

    For state that must survive a crash at any instant (the learner's checkpoint, whose loss
    would silently undo acknowledged work): ``destination`` is a symlink to a sibling folder, and
    the swap replaces the symlink with one rename, after every file and folder was fsynced. At
    every moment ``destination`` names either the previous complete folder or the new one.
    """
    destination = Path(destination)
    parent = destination.parent.resolve()
    parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=parent, prefix=f".{destination.name}.", suffix=".tmp"))
    try:
        yield staging
        _make_readable(staging)
        _fsync_tree(staging)
        final = parent / f".{destination.name}.{new_version()}.{os.getpid()}"
        os.replace(staging, final)
        link = parent / f".{destination.name}.link.{os.getpid()}"
        with contextlib.suppress(FileNotFoundError):
            link.unlink()
        os.symlink(final.name, link)
        if destination.exists() and not destination.is_symlink():
            # A folder written before this layout: moved aside first (the one non-atomic step, once).
            os.replace(destination, parent / f".{destination.name}.{new_version()}.legacy")
        os.replace(link, destination)
        _fsync_directory(parent)
        _remove_stale_siblings(parent, destination.name, keep=final.name)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)


def _fsync_tree(folder: Path) -> None:
    for path in folder.rglob("*"):
        if path.is_file():
            with path.open("rb") as handle:
                os.fsync(handle.fileno())
    for path in [folder, *(p for p in folder.rglob("*") if p.is_dir())]:
        _fsync_directory(path)


def _fsync_directory(folder: Path) -> None:
    descriptor = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(descriptor)
    finally:
        os.close(descriptor)


def _remove_stale_siblings(parent: Path, name: str, keep: str) -> None:
    """Folders of earlier swaps (and of swaps a crash interrupted) that nothing points to."""
    for sibling in parent.glob(f".{name}.*"):
        if sibling.name != keep and sibling.is_dir() and not sibling.is_symlink():
            shutil.rmtree(sibling, ignore_errors=True)


def _make_readable(folder: Path) -> None:
    """Temporary files are private (0600/0700); a finished artifact is read by other users too."""
    folder.chmod(0o755)
    for path in folder.rglob("*"):
        path.chmod(0o755 if path.is_dir() else 0o644)


def hash_files(folder: Path, names: list[str]) -> dict[str, str]:
    return {name: file_sha256(folder / name) for name in sorted(names)}


def verify_files(folder: Path, manifest: ArtifactManifest) -> None:
    """Every payload file is present and has the recorded hash, or :class:`ArtifactError`."""
    for name, expected in manifest.files.items():
        path = folder / name
        if not path.is_file():
            raise ArtifactError(f"artifact {folder} is partial: {name} is missing")
        if file_sha256(path) != expected:
            raise ArtifactError(f"artifact {folder} is corrupt: {name} does not match its recorded sha256")


def read_manifest(folder: Path, model: type[ArtifactManifest] = ArtifactManifest) -> ArtifactManifest:
    """Read and validate ``manifest.json``; anything wrong is an :class:`ArtifactError`."""
    path = folder / MANIFEST_NAME
    if not path.is_file():
        raise ArtifactError(f"{folder} is not an artifact: {MANIFEST_NAME} is missing")
    try:
        manifest = model.model_validate_json(path.read_text(encoding="utf-8"))
    except ValueError as exc:
        raise ArtifactError(f"{path} is not a valid {model.__name__}: {exc}") from exc
    if manifest.format_version != FORMAT_VERSION:
        raise ArtifactError(f"{path}: format_version {manifest.format_version} is not supported (expected {FORMAT_VERSION})")
    return manifest


def write_manifest(folder: Path, manifest: ArtifactManifest, key: bytes | None = None) -> None:
    """Write ``manifest.json``, and sign it when ``key`` is given.

    Every publisher writes its manifest last, through here, so passing the key here signs
    everything that is published. Without a key a stale signature is removed: it could only
    mislead, as it no longer matches.
    """
    write_json_atomic(folder / MANIFEST_NAME, manifest.model_dump(mode="json"))
    if key is None:
        (folder / SIGNATURE_NAME).unlink(missing_ok=True)
    else:
        sign_manifest(folder, key)


# ---------------------------------------------------------------------------- signatures


def checked_key(key: bytes, source: str) -> bytes:
    """``key`` if it is long enough to be a secret, else :class:`SigningKeyError` naming ``source``."""
    if len(key) < MIN_KEY_BYTES:
        raise SigningKeyError(
            f"the HMAC key in {source} is {len(key)} bytes; at least {MIN_KEY_BYTES} are required "
            "(make one with: python -c 'import secrets; print(secrets.token_hex(32))')"
        )
    return key


def key_from_env(variable: str) -> bytes | None:
    """The key in ``$variable`` (checked for length), or None when the variable is unset or empty."""
    value = os.environ.get(variable)
    if not value:
        return None
    return checked_key(value.encode("utf-8"), f"${variable}")


def signing_key(config: "AppConfig | ArtifactsConfig") -> bytes | None:
    """The artifact signing key the config asks for, or None when it asks for none.

    Takes the app config or just its ``artifacts`` section (what a Serve replica is given: the
    variable's name travels in deployment arguments, the key itself never does). A config that
    names a variable which is unset fails closed: dropping the variable from a deployment must
    not silently turn verification off.
    """
    settings = getattr(config, "artifacts", config)
    variable = settings.signing_key_env
    if variable is None:
        return None
    key = key_from_env(variable)
    if key is None:
        raise SigningKeyError(
            f"artifacts.signing_key_env names ${variable}, which is not set: set it to the signing key "
            f"(at least {MIN_KEY_BYTES} bytes), or remove artifacts.signing_key_env to load unsigned artifacts"
        )
    return key


def manifest_signature(manifest_bytes: bytes, key: bytes) -> str:
    """HMAC-SHA256 of the manifest's exact bytes, hex."""
    return hmac.new(key, manifest_bytes, hashlib.sha256).hexdigest()


def sign_manifest(folder: Path, key: bytes) -> None:
    """Write ``manifest.hmac`` for the ``manifest.json`` in ``folder`` as it is now."""
    signature = manifest_signature((folder / MANIFEST_NAME).read_bytes(), key)
    path = folder / SIGNATURE_NAME
    path.unlink(missing_ok=True)  # a finished artifact's files are read-only to others, not to us: replace, never edit
    path.write_text(signature + "\n", encoding="ascii")


def verify_signature(folder: Path, key: bytes) -> None:
    """``manifest.json`` in ``folder`` carries a valid signature under ``key``, or :class:`ArtifactError`."""
    manifest_path, signature_path = folder / MANIFEST_NAME, folder / SIGNATURE_NAME
    if not manifest_path.is_file():
        raise ArtifactError(f"{folder} is not an artifact: {MANIFEST_NAME} is missing")
    if not signature_path.is_file():
        raise ArtifactError(
            f"artifact {folder} is not signed ({SIGNATURE_NAME} is missing) and a signing key is configured, "
            "so it is not loaded; write it again with the key set"
        )
    try:
        recorded = signature_path.read_text(encoding="ascii").strip()
    except (UnicodeDecodeError, OSError) as exc:
        raise ArtifactError(f"artifact {folder}: {SIGNATURE_NAME} cannot be read: {exc}") from exc
    if not hmac.compare_digest(manifest_signature(manifest_path.read_bytes(), key), recorded):
        raise ArtifactError(
            f"artifact {folder}: the HMAC in {SIGNATURE_NAME} does not verify with the configured key; "
            "the manifest was altered or signed with another key, and is not loaded"
        )


def verify_artifact(
    folder: Path, key: bytes | None, model: type[ArtifactManifest] = ArtifactManifest
) -> ArtifactManifest:
    """The manifest of ``folder``, once its signature (when ``key`` is given) and every file hash check out.

    The order matters: the signature is checked before the manifest is parsed, and the
    manifest's hashes before any payload is opened, so nothing unverified is ever read.
    """
    if key is not None:
        verify_signature(folder, key)
    manifest = read_manifest(folder, model)
    verify_files(folder, manifest)
    return manifest
