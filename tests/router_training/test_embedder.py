"""Contrastive embedder training on the real MiniLM model and the real seed split, a few steps each.

Each variant is trained once per module; the saved directories are then loaded in a fresh
process, as serving does, and checked for unit-length 384-d embeddings, gate probabilities and
manifest hashes.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from router_training.embedder.pairs import OnePairPerCategoryBatchSampler, category_pairs, routing_texts
from router_training.embedder.train import EmbedderTrainingArgs, build_model, train_embedder
from router_training.router.data import DATA_DIR, OUT_OF_SCOPE, DataError, Example, read_examples
from services.artifacts import read_manifest, verify_files
from services.router.config import DEFAULT_CATEGORIES, EmbedderSource
from services.router.embedder import locate_embedder

GATE_STEPS = 10  # measured: 6 steps already give the gate ~0.77 calibration accuracy
TEXTS = ["Write a haiku about autumn rain.", "Solve 3x + 7 = 22 for x.", "Fix this Python: print(len(5))"]

ENCODE_IN_FRESH_PROCESS = """
import json, sys
import numpy as np
folders, texts = json.loads(sys.argv[1]), json.loads(sys.argv[2])
reports = {}
for variant, path in folders.items():
    if variant == "moe":
        from services.router.moe_embedder import gate_categories, gate_probabilities, load_moe_embedder
        model = load_moe_embedder(path)
    else:
        from sentence_transformers import SentenceTransformer
        model = SentenceTransformer(path, device="cpu")
    embeddings = model.encode(texts, normalize_embeddings=True, convert_to_numpy=True)
    report = {"shape": list(embeddings.shape), "norms": np.linalg.norm(embeddings, axis=1).tolist()}
    if variant == "moe":
        probabilities = gate_probabilities(model, texts)
        report.update(gate_shape=list(probabilities.shape), gate_sums=probabilities.sum(axis=1).tolist(),
                      categories=list(gate_categories(model)))
    reports[variant] = report
print(json.dumps(reports))
"""


# Chit-chat and task-less prompts are one more group while fine-tuning, so they gather apart.
LABELS = (*DEFAULT_CATEGORIES, OUT_OF_SCOPE)


@pytest.fixture(scope="module")
def train_split() -> list[Example]:
    return read_examples(DATA_DIR / "train.jsonl", DEFAULT_CATEGORIES)


@pytest.fixture(scope="module")
def dense_dir(tmp_path_factory: pytest.TempPathFactory, train_split: list[Example]) -> Path:
    out = tmp_path_factory.mktemp("embedders") / "dense"
    return train_embedder(EmbedderSource(), DEFAULT_CATEGORIES, train_split, out, "dense", EmbedderTrainingArgs(max_steps=2))


@pytest.fixture(scope="module")
def moe_dir(tmp_path_factory: pytest.TempPathFactory, train_split: list[Example]) -> Path:
    out = tmp_path_factory.mktemp("embedders") / "moe"
    return train_embedder(
        EmbedderSource(), DEFAULT_CATEGORIES, train_split, out, "moe", EmbedderTrainingArgs(max_steps=GATE_STEPS)
    )


@pytest.fixture(scope="module")
def fresh_process(dense_dir: Path, moe_dir: Path) -> dict[str, Any]:
    """Both saved models loaded and used in one new process, as serving would load them."""
    folders = {"dense": str(dense_dir), "moe": str(moe_dir)}
    result = subprocess.run(
        [sys.executable, "-c", ENCODE_IN_FRESH_PROCESS, json.dumps(folders), json.dumps(TEXTS)],
        capture_output=True, text=True, timeout=300, env={**os.environ, "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def assert_verified_manifest(path: Path, variant: str) -> None:
    manifest = read_manifest(path)
    verify_files(path, manifest)
    on_disk = {str(file.relative_to(path)) for file in path.rglob("*") if file.is_file()} - {"manifest.json"}
    assert set(manifest.files) == on_disk
    assert manifest.kind == "embedder"
    assert manifest.training["variant"] == variant
    assert manifest.training["taxonomy"] == list(LABELS)


def test_batches_hold_one_pair_per_category(train_split: list[Example]) -> None:
    pairs = category_pairs(train_split, LABELS)
    assert len(pairs) == len(train_split)
    assert all(anchor != positive for anchor, positive in zip(pairs["anchor"], pairs["positive"]))
    sampler = OnePairPerCategoryBatchSampler(pairs, batch_size=9, drop_last=False, valid_label_columns=["label"])
    batches = list(sampler)
    assert len(batches) == len(sampler) == math.ceil(len(pairs) / 9)
    labels = pairs["label"]
    assert all(sorted(labels[row] for row in batch) == list(range(9)) for batch in batches)
    with pytest.raises(ValueError, match="at most 9"):
        OnePairPerCategoryBatchSampler(pairs, batch_size=10, drop_last=False, valid_label_columns=["label"])
    with pytest.raises(DataError, match="'out_of_scope', which is not in the taxonomy"):
        category_pairs(train_split, DEFAULT_CATEGORIES)


def test_invalid_arguments_name_the_field(train_split: list[Example], tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="max_seq_length"):
        EmbedderTrainingArgs(max_seq_length=4)
    with pytest.raises(ValueError, match="moe_layers"):
        EmbedderTrainingArgs(moe_layers=())
    with pytest.raises(ValueError, match="variant"):
        train_embedder(EmbedderSource(), DEFAULT_CATEGORIES, train_split, tmp_path / "x", "sparse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"moe_layers \[6\].*0\.\.5"):
        build_model(locate_embedder(EmbedderSource()), "moe", DEFAULT_CATEGORIES, EmbedderTrainingArgs(moe_layers=(6,)))


def test_untrained_moe_embeds_exactly_like_its_base() -> None:
    """Every expert starts as a copy of the pretrained block, so routing cannot change anything yet."""
    base_path = locate_embedder(EmbedderSource())
    base = build_model(base_path, "dense", DEFAULT_CATEGORIES, EmbedderTrainingArgs())
    moe = build_model(base_path, "moe", DEFAULT_CATEGORIES, EmbedderTrainingArgs())
    np.testing.assert_allclose(moe.encode(TEXTS), base.encode(TEXTS), atol=1e-6)


def test_dense_run_writes_a_plain_sentence_transformers_model(dense_dir: Path, fresh_process: dict[str, Any]) -> None:
    report = fresh_process["dense"]
    assert report["shape"] == [len(TEXTS), 384]
    np.testing.assert_allclose(report["norms"], 1.0, atol=1e-5)
    assert_verified_manifest(dense_dir, "dense")


def test_moe_run_writes_a_model_with_a_gate(moe_dir: Path, fresh_process: dict[str, Any]) -> None:
    modules = json.loads((moe_dir / "modules.json").read_text(encoding="utf-8"))
    assert modules[0]["type"] == "services.router.moe_embedder.MoETransformer"
    report = fresh_process["moe"]
    assert report["shape"] == [len(TEXTS), 384]
    np.testing.assert_allclose(report["norms"], 1.0, atol=1e-5)
    assert report["gate_shape"] == [len(TEXTS), len(LABELS)]
    np.testing.assert_allclose(report["gate_sums"], 1.0, atol=1e-5)
    assert report["categories"] == list(LABELS)
    assert_verified_manifest(moe_dir, "moe")


def test_moe_gate_predicts_held_out_categories(moe_dir: Path) -> None:
    from services.router.moe_embedder import gate_probabilities, load_moe_embedder

    calibration = read_examples(DATA_DIR / "calibration.jsonl", DEFAULT_CATEGORIES)
    labels = np.array([LABELS.index(example.category) for example in calibration])
    probabilities = gate_probabilities(load_moe_embedder(moe_dir), routing_texts(calibration))
    accuracy = float((probabilities.argmax(axis=1) == labels).mean())
    assert accuracy > 0.5, f"gate accuracy {accuracy:.2f} on calibration (chance is {1 / len(DEFAULT_CATEGORIES):.2f})"


def test_serving_embedder_loads_the_moe_directory(moe_dir: Path) -> None:
    """The router's Embedder (what a router version bundling this model runs) uses the gate."""
    from services.router.embedder import Embedder
    from services.router.moe_embedder import load_moe_embedder

    served = Embedder(EmbedderSource(path=str(moe_dir)))
    assert served.dimension == 384
    expected = load_moe_embedder(moe_dir).encode(TEXTS, normalize_embeddings=True, convert_to_numpy=True)
    np.testing.assert_allclose(served.encode(TEXTS), expected, atol=1e-5)
