"""A verified fp32 copy of a GGUF expert, so that only the first start pays for de-quantisation.

transformers de-quantises a GGUF file to fp32 every time it loads one: 20–30 s for SmolLM2 on two
cores, in every process that loads it (the service, each test session, the mapping job). The first
load therefore also writes what it built as a standard transformers directory (safetensors weights,
config, tokenizer) in the project's artifact format, whose manifest records the GGUF file's sha256.
Later loads use that directory only when the source file still has that hash and every cached file
still has its recorded hash; anything else (a new GGUF, a truncated or edited file) is rebuilt.

Entries are named by the source's content (``<stem>-<sha256[:16]>``), so a process still reading an
old entry is never disturbed by the build of a new one; older entries of the same file are pruned.
A file lock makes concurrent first starts (a Serve replica beside a training job) build once.

An engine that runs the GGUF file itself (llama.cpp) needs only its tokenizer. transformers reads a
tokenizer out of a GGUF file through its GGUF reader, which loads torch (about 180 MiB) and takes
seconds; so the tokenizer alone is converted once, in a child process, into an entry of its own
(``<stem>-<sha256[:16]>-tokenizer``, kind ``converted-tokenizer``), and read from there with the
tokenizers library: such a replica never loads torch.

With the artifact signing key (``artifacts.signing_key_env``), entries are signed when written and
used only when their signature verifies: an entry written without the key, or edited since, is
treated like a corrupt one and rebuilt from the GGUF file, which is the source of trust. Neither
kind of entry may name custom code (:mod:`services.custom_code`).
"""

from __future__ import annotations

import functools
import logging
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.artifacts import (
    ArtifactError,
    ArtifactManifest,
    artifact_directory,
    file_sha256,
    hash_files,
    read_manifest,
    verify_artifact,
    verify_signature,
    write_manifest,
)
from services.custom_code import refuse_custom_code

logger = logging.getLogger(__name__)

CACHE_ENV = "COE_WEIGHTS_CACHE"
CACHE_KIND = "converted-weights"
TOKENIZER_KIND = "converted-tokenizer"
KEY_ENV = "COE_WEIGHTS_CACHE_KEY"  # the signing key, hex, for the child process that converts a tokenizer
CONVERTED_DTYPE = "float32"


def default_cache_dir() -> Path:
    """``$COE_WEIGHTS_CACHE``, else ``$XDG_CACHE_HOME/coe-router/weights``, else ``~/.cache/...``.

    A user-level cache outlives checkouts and virtual environments, as the model hub's does.
    """
    configured = os.environ.get(CACHE_ENV)
    if configured:
        return Path(configured).expanduser()
    root = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(root) / "coe-router" / "weights"


@dataclass(frozen=True)
class CacheLookup:
    """Where a GGUF file's converted copy lives, and whether it can be used as it is."""

    folder: Path
    source_sha256: str
    usable: bool
    reason: str  # why it cannot be used (empty when usable)


class WeightsCache:
    """Converted copies of GGUF files under one folder.

    ``key``: the artifact signing key, when one is configured; entries are then signed on write
    and must verify on read.
    """

    def __init__(self, root: Path | None = None, *, key: bytes | None = None) -> None:
        self.root = (root or default_cache_dir()).resolve()
        self.key = key

    def entry(self, gguf_path: Path, source_sha256: str, kind: str = CACHE_KIND) -> Path:
        suffix = "-tokenizer" if kind == TOKENIZER_KIND else ""
        return self.root / f"{gguf_path.stem}-{source_sha256[:16]}{suffix}"

    def lookup(self, gguf_path: Path, kind: str = CACHE_KIND, source_sha256: str | None = None) -> CacheLookup:
        """Check the entry of ``kind`` for ``gguf_path`` against the file as it is now; never raises
        for a bad entry. ``source_sha256``: the file's hash, when the caller has just computed it."""
        source_sha256 = source_sha256 or file_sha256(gguf_path)
        folder = self.entry(gguf_path, source_sha256, kind)
        if not folder.is_dir():
            return CacheLookup(folder, source_sha256, False, "not converted yet")
        try:
            manifest = verify_artifact(folder, self.key)
            if manifest.kind != kind:
                raise ArtifactError(f"{folder} holds a {manifest.kind!r}, not {kind!r}")
            recorded = manifest.data.get("source", {}).get("sha256")
            if recorded != source_sha256:
                raise ArtifactError(f"{folder} was converted from another file (sha256 {str(recorded)[:16]}…)")
            refuse_custom_code(folder)
        except (ArtifactError, OSError) as exc:
            return CacheLookup(folder, source_sha256, False, str(exc))
        return CacheLookup(folder, source_sha256, True, "")

    def recorded_parameters(self, gguf_path: Path) -> int | None:
        """The source's parameter count as recorded at conversion, if this very file was converted.

        Reading it from the GGUF means parsing its whole vocabulary (seconds); every router
        replica and CLI run needs it for the expert's cost, none needs the weights verified for it.
        """
        source_sha256 = file_sha256(gguf_path)
        folder = self.entry(gguf_path, source_sha256)
        try:
            if self.key is not None:
                verify_signature(folder, self.key)  # cheap (the manifest only); the weights are not read here
            manifest = read_manifest(folder)
        except (ArtifactError, OSError):
            return None
        source = manifest.data.get("source", {})
        count = source.get("parameters")
        return count if isinstance(count, int) and source.get("sha256") == source_sha256 else None

    def tokenizer(self, gguf_path: Path) -> Any:
        """The tokenizer alone, without loading torch: from a verified copy (of the tokenizer, else
        of the weights), else converted once in a child process and cached. The tokenizer's own
        entry is checked first: verifying the weights entry means hashing 540 MB."""
        own = self.lookup(gguf_path, TOKENIZER_KIND)
        if own.usable:
            return _load_tokenizer(own.folder)
        weights = self.lookup(gguf_path, CACHE_KIND, own.source_sha256)
        if weights.usable:
            return _load_tokenizer(weights.folder)
        refuse_custom_code(gguf_path.parent)
        self._convert_tokenizer_in_child(gguf_path)
        own = self.lookup(gguf_path, TOKENIZER_KIND, own.source_sha256)
        if own.usable:
            return _load_tokenizer(own.folder)
        logger.warning("no cached tokenizer for %s (%s); reading it from the GGUF file in this process", gguf_path, own.reason)
        return _tokenizer_from_gguf(gguf_path)

    def _convert_tokenizer_in_child(self, gguf_path: Path) -> None:
        """``python -m services.experts.weights_cache GGUF``: torch loads there, not here."""
        environment = {**os.environ, **({KEY_ENV: self.key.hex()} if self.key is not None else {})}
        command = [sys.executable, "-m", "services.experts.weights_cache", str(gguf_path), "--root", str(self.root)]
        done = subprocess.run(command, env=environment, capture_output=True, text=True, check=False)
        if done.returncode != 0:
            logger.warning("converting the tokenizer of %s failed: %s", gguf_path, done.stderr.strip()[-2000:])

    def write_tokenizer(self, gguf_path: Path) -> Path | None:
        """Convert the GGUF file's tokenizer into its cache entry (once, under the file lock);
        returns the entry, or None when the cache is not writable."""
        from filelock import FileLock

        found = self.lookup(gguf_path, TOKENIZER_KIND)
        if found.usable:
            return found.folder
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            with FileLock(str(found.folder) + ".lock"):
                if self.lookup(gguf_path, TOKENIZER_KIND, found.source_sha256).usable:
                    return found.folder  # another process built it while we waited
                with artifact_directory(found.folder) as staging:
                    _tokenizer_from_gguf(gguf_path).save_pretrained(staging)
                    self._write_manifest(staging, TOKENIZER_KIND, gguf_path, found.source_sha256)
        except OSError as exc:
            logger.warning("could not cache the tokenizer of %s in %s: %s", gguf_path, found.folder, exc)
            return None
        self._prune(gguf_path, found.source_sha256)
        return found.folder

    def _write_manifest(self, staging: Path, kind: str, gguf_path: Path, source_sha256: str, **training: Any) -> None:
        names = [path.name for path in staging.iterdir() if path.is_file()]
        write_manifest(
            staging,
            ArtifactManifest(
                kind=kind,
                name=gguf_path.stem,
                version=source_sha256[:16],
                base=gguf_path.name,
                files=hash_files(staging, names),
                data={
                    "source": {
                        "file": str(gguf_path),
                        "sha256": source_sha256,
                        "bytes": gguf_path.stat().st_size,
                        "parameters": gguf_parameter_count(gguf_path),
                    }
                },
                training=training,
            ),
            self.key,
        )

    def load(self, gguf_path: Path) -> tuple[Any, Any]:
        """Model and tokenizer of ``gguf_path``: from the cache when it verifies, else converted now."""
        from filelock import FileLock

        found = self.lookup(gguf_path)
        if found.usable:
            return _load_directory(found.folder)
        try:
            self.root.mkdir(parents=True, exist_ok=True)
            lock = FileLock(str(found.folder) + ".lock")
            lock.acquire()
        except OSError as exc:  # a read-only cache (an image's, say) costs time, never the model
            logger.warning("weights cache %s is not writable (%s); converting %s without caching it", self.root, exc, gguf_path)
            return _load_gguf(gguf_path)
        try:
            again = self.lookup(gguf_path)  # another process may have built it while we waited
            if again.usable:
                return _load_directory(again.folder)
            logger.info("converting %s to fp32 safetensors in %s (%s); later starts load the copy", gguf_path, found.folder, found.reason)
            model, tokenizer = _load_gguf(gguf_path)
            self._write(found.folder, gguf_path, found.source_sha256, model, tokenizer)
        finally:
            lock.release()
        self._prune(gguf_path, found.source_sha256)
        return model, tokenizer

    def _write(self, folder: Path, gguf_path: Path, source_sha256: str, model: Any, tokenizer: Any) -> None:
        started = time.monotonic()
        try:
            with artifact_directory(folder) as staging:
                _save_dequantised(model, staging)
                tokenizer.save_pretrained(staging)
                self._write_manifest(staging, CACHE_KIND, gguf_path, source_sha256, dtype=CONVERTED_DTYPE)
        except OSError as exc:  # a read-only or full disk costs the next start time, not this one its model
            logger.warning("could not cache the converted weights in %s: %s", folder, exc)
            return
        logger.info("cached the converted weights in %s (%.1f s)", folder, time.monotonic() - started)

    def _prune(self, gguf_path: Path, source_sha256: str) -> None:
        """Entries converted from earlier versions of the same file name are of no further use."""
        current = f"{gguf_path.stem}-{source_sha256[:16]}"
        for stale in self.root.glob(f"{gguf_path.stem}-*"):
            if stale.is_dir() and stale.name not in (current, f"{current}-tokenizer"):
                shutil.rmtree(stale, ignore_errors=True)
                Path(str(stale) + ".lock").unlink(missing_ok=True)


def gguf_parameter_count(gguf_path: Path) -> int:
    """Elements of every tensor in the file, from its header (no tensor data is read).

    Parsing the header takes seconds in pure Python, and costs are resolved often (every router
    build, every assignment): remembered per file, size and modification time.
    """
    stat = Path(gguf_path).stat()
    return _gguf_parameter_count(str(gguf_path), stat.st_size, stat.st_mtime_ns)


@functools.lru_cache(maxsize=16)
def _gguf_parameter_count(path: str, size: int, mtime_ns: int) -> int:
    import gguf

    return sum(int(tensor.n_elements) for tensor in gguf.GGUFReader(path).tensors)


def _save_dequantised(model: Any, folder: Path) -> None:
    """Write the in-memory fp32 model as a plain transformers directory.

    ``save_pretrained`` refuses a model loaded from GGUF (it still counts as quantised), though its
    tensors are plain fp32 by now: save the config without the GGUF marks, and the tensors with
    safetensors, which stores tied weights (embedding and LM head) once.
    """
    import copy

    from safetensors.torch import save_model

    config = copy.deepcopy(model.config)
    for attribute in ("quantization_config", "_pre_quantization_dtype"):
        if hasattr(config, attribute):
            delattr(config, attribute)
    config.dtype = CONVERTED_DTYPE
    config.save_pretrained(folder)
    model.generation_config.save_pretrained(folder)
    save_model(model, str(folder / "model.safetensors"), metadata={"format": "pt"})


def _load_gguf(gguf_path: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refuse_custom_code(gguf_path.parent)  # config files beside the GGUF file may be read with it
    kwargs: dict[str, Any] = {"local_files_only": True, "gguf_file": gguf_path.name}
    tokenizer = AutoTokenizer.from_pretrained(str(gguf_path.parent), **kwargs)
    model = AutoModelForCausalLM.from_pretrained(str(gguf_path.parent), dtype=torch.float32, **kwargs)
    return model, tokenizer


def _load_tokenizer(folder: Path) -> Any:
    """A saved fast tokenizer, read with the tokenizers library (transformers' AutoTokenizer would load torch)."""
    from transformers import PreTrainedTokenizerFast

    refuse_custom_code(folder)
    return PreTrainedTokenizerFast.from_pretrained(str(folder), local_files_only=True)


def _tokenizer_from_gguf(gguf_path: Path) -> Any:
    from transformers import AutoTokenizer

    refuse_custom_code(gguf_path.parent)
    return AutoTokenizer.from_pretrained(str(gguf_path.parent), gguf_file=gguf_path.name, local_files_only=True)


def _load_directory(folder: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    refuse_custom_code(folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder), local_files_only=True)
    model = AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32, local_files_only=True)
    return model, tokenizer


def main(argv: list[str] | None = None) -> int:
    """Convert one GGUF file's tokenizer into the cache (run as a child process by ``WeightsCache.tokenizer``)."""
    import argparse

    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("gguf", type=Path)
    parser.add_argument("--root", type=Path, required=True)
    args = parser.parse_args(argv)
    key = os.environ.get(KEY_ENV)
    written = WeightsCache(args.root, key=bytes.fromhex(key) if key else None).write_tokenizer(args.gguf)
    return 0 if written is not None else 1


if __name__ == "__main__":
    raise SystemExit(main())
