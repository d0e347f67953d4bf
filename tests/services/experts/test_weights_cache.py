"""The converted-weights cache: what a GGUF expert loads from after its first start.

The session's cache (conftest.weights_cache) is shared by every process of the test session;
tampering happens on copies in a temporary folder.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.artifacts import MANIFEST_NAME, file_sha256
from services.experts.config import GGUFExpert
from services.experts.loading import load_model, locate_weights
from services.experts.weights_cache import CACHE_KIND, WeightsCache
from tests.conftest import BROKEN_ENTRY_MARKER, config_from, default_config_dict


@pytest.fixture(scope="module")
def gguf_path() -> Path:
    base = config_from(default_config_dict()).expert("smollm2")
    assert isinstance(base, GGUFExpert)
    return locate_weights(base).weights_path


@pytest.fixture(scope="module")
def cached_model(gguf_path: Path) -> Any:
    """The default expert as every process loads it (converting once, if this is the first start)."""
    base = config_from(default_config_dict()).expert("smollm2")
    assert isinstance(base, GGUFExpert)
    model, _ = load_model(base)
    return model


def test_the_cache_records_the_source_hash_and_holds_its_dequantised_weights(gguf_path: Path, cached_model: Any) -> None:
    import gguf

    found = WeightsCache().lookup(gguf_path)
    assert found.usable, found.reason
    manifest = json.loads((found.folder / MANIFEST_NAME).read_text(encoding="utf-8"))
    assert manifest["kind"] == CACHE_KIND
    assert manifest["data"]["source"]["sha256"] == file_sha256(gguf_path)
    assert "model.safetensors" in manifest["files"] and "tokenizer.json" in manifest["files"]

    # The token embedding straight from the GGUF file, de-quantised by the gguf library itself.
    reader = gguf.GGUFReader(gguf_path)
    [tensor] = [t for t in reader.tensors if t.name == "token_embd.weight"]
    expected = gguf.quants.dequantize(tensor.data, tensor.tensor_type).reshape(cached_model.get_input_embeddings().weight.shape)
    np.testing.assert_array_equal(cached_model.get_input_embeddings().weight.detach().numpy(), expected.astype(np.float32))


def copy_of_cache(gguf_path: Path, tmp_path: Path, changed: str) -> tuple[WeightsCache, Path]:
    """A private copy of the session's entry: the file to be changed is copied, the rest hard-linked."""
    source = WeightsCache().lookup(gguf_path).folder
    cache = WeightsCache(tmp_path / "cache")
    entry = cache.entry(gguf_path, file_sha256(gguf_path))
    shutil.copytree(source, entry, copy_function=lambda src, dst: shutil.copy2(src, dst) if Path(src).name == changed else os.link(src, dst))
    return cache, entry


def test_a_broken_entry_found_at_start_was_converted_again(gguf_path: Path, cached_model: Any, weights_cache: WeightsCache) -> None:
    """The session's cache began with a broken entry (conftest.weights_cache); the first load replaced it."""
    found = weights_cache.lookup(gguf_path)
    assert found.usable, found.reason
    assert not (found.folder / BROKEN_ENTRY_MARKER).exists()


def test_a_changed_cached_file_is_not_used(gguf_path: Path, cached_model: Any, tmp_path: Path) -> None:
    cache, entry = copy_of_cache(gguf_path, tmp_path, changed="model.safetensors")
    assert cache.lookup(gguf_path).usable
    with (entry / "model.safetensors").open("r+b") as weights:
        weights.seek(-1, os.SEEK_END)
        last = weights.read(1)
        weights.seek(-1, os.SEEK_END)
        weights.write(bytes([last[0] ^ 0xFF]))
    found = cache.lookup(gguf_path)
    assert not found.usable and "model.safetensors does not match its recorded sha256" in found.reason


def test_a_copy_made_from_another_gguf_is_not_used(gguf_path: Path, cached_model: Any, tmp_path: Path) -> None:
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
