"""The converted-weights cache: what a GGUF expert loads from after its first start.

The session's cache (conftest.weights_cache) is shared by every process of the test session;
tampering happens on copies in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from services.artifacts import MANIFEST_NAME, file_sha256
from services.experts.config import GGUFExpert
from services.experts.loading import locate_weights
from services.experts.weights_cache import CACHE_KIND, WeightsCache
from tests.conftest import BROKEN_ENTRY_MARKER, config_from, default_config_dict


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    base = config_from(default_config_dict()).expert("smollm2")
    assert isinstance(base, GGUFExpert)
    return locate_weights(base).weights_path


@pytest.fixture(scope="module")
def converted(gguf_path: Path) -> Path:
    """The session's entry for the default expert, converted by whoever loaded the model first
    (the served app's replica, in a full run), or here when nothing has yet."""
    cache = WeightsCache()
    if not cache.lookup(gguf_path).usable:
        cache.load(gguf_path)
    return cache.lookup(gguf_path).folder


def test_the_cache_records_the_source_hash_and_holds_its_dequantised_weights(gguf_path: Path, converted: Path) -> None:
    import gguf
    from safetensors import safe_open

    manifest = json.loads((converted / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["kind"] == CACHE_KIND
    assert manifest["data"]["source"]["sha256"] == file_sha256(gguf_path)
    assert "model.safetensors" in manifest["files"] and "tokenizer.json" in manifest["files"]

    # The token embedding straight from the GGUF file, de-quantised by the gguf library itself.
    reader = gguf.GGUFReader(gguf_path)
    [tensor] = [t for t in reader.tensors if t.name == "token_embd.weight"]
    with safe_open(str(converted / "model.safetensors"), framework="np") as weights:
        # SmolLM2 ties its embedding to the LM head; the shared tensor is stored once, under either name.
        [name] = [key for key in weights.keys() if key in ("model.embed_tokens.weight", "lm_head.weight")]
        cached = weights.get_tensor(name)
    expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(cached.shape)
    assert cached.dtype == np.float32
    np.testing.assert_array_equal(cached, expected.astype(np.float32))


def copy_of_cache(gguf_path: Path, tmp_path: Path, changed: str) -> tuple[WeightsCache, Path]:
    """A private copy of the session's entry: the file to be changed is copied, the rest hard-linked."""
    source = WeightsCache().lookup(gguf_path).folder
    cache = WeightsCache(tmp_path / "cache")
    entry = cache.entry(gguf_path, file_sha256(gguf_path))
    shutil.copytree(source, entry, copy_function=lambda src, dst: shutil.copy2(src, dst) if Path(src).name == changed else os.link(src, dst))
    return cache, entry


def test_a_broken_entry_found_at_start_was_converted_again(gguf_path: Path, converted: Path, weights_cache: WeightsCache) -> None:
    """The session's cache began with a broken entry (conftest.weights_cache); the first load replaced it."""
    found = weights_cache.lookup(gguf_path)
    assert found.usable, found.reason
    assert not (found.folder / BROKEN_ENTRY_MARKER).exists()


def test_a_changed_cached_file_is_not_used(gguf_path: Path, converted: Path, tmp_path: Path) -> None:
    cache, entry = copy_of_cache(gguf_path, tmp_path, changed="model.safetensors")
    assert cache.lookup(gguf_path).usable
    with (entry / "model.safetensors").open("r+b") as weights:
        weights.seek(-1, os.SEEK_END)
        last = weights.read(1)
        weights.seek(-1, os.SEEK_END)
        weights.write(bytes([last[0] ^ 0xFF]))
    found = cache.lookup(gguf_path)
    assert not found.usable and "model.safetensors does not match its recorded sha256" in found.reason


def test_a_copy_made_from_another_gguf_is_not_used(gguf_path: Path, converted: Path, tmp_path: Path) -> None:
    cache, entry = copy_of_cache(gguf_path, tmp_path, changed=MANIFEST_NAME)
    manifest = json.loads((entry / MANIFEST_NAME).read_text(encoding="utf-8"))
    manifest["data"]["source"]["sha256"] = "0" * 64
    (entry / MANIFEST_NAME).write_text(json.dumps(manifest), encoding="utf-8")
    found = cache.lookup(gguf_path)
    assert not found.usable and "converted from another file" in found.reason


def test_a_new_gguf_gets_its_own_entry(gguf_path: Path, tmp_path: Path) -> None:
    """The entry is named by the source's content: an edited GGUF never matches the old copy."""
    edited = tmp_path / gguf_path.name
    shutil.copyfile(gguf_path, edited)
    with edited.open("ab") as handle:
        handle.write(b"\0")
    cache = WeightsCache(tmp_path / "cache")
    assert cache.entry(edited, file_sha256(edited)) != cache.entry(gguf_path, file_sha256(gguf_path))
    found = cache.lookup(edited)
    assert not found.usable and found.reason == "not converted yet"
