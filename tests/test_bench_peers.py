"""A reduced comparison of stage 1 with the peer classifiers, on prompts of the test split."""

from __future__ import annotations

import random
from typing import Any

from benchmarks._peers import BATCH, PEERS, compare, stage1_classifier
from router_training.router.data import DATA_DIR, read_examples
from services.router.routing_input import routing_text


def texts_and_labels(split: str, taxonomy: tuple[str, ...], context: Any, count: int) -> tuple[list[str], list[str]]:
    examples = read_examples(DATA_DIR / f"{split}.jsonl", taxonomy)
    examples = random.Random(0).sample(examples, min(count, len(examples)))
    return [routing_text(example.messages, context)[0] for example in examples], [str(example.category) for example in examples]


def test_stage1_and_each_peer_are_scored_on_the_same_prompts(static_router: Any) -> None:
    manifest = static_router.artifact.manifest
    train_texts, train_labels = texts_and_labels("train", manifest.taxonomy, manifest.context, 400)
    texts, labels = texts_and_labels("test", manifest.taxonomy, manifest.context, 80)

    table = compare(stage1_classifier(static_router), train_texts, train_labels, texts, labels, speed_texts=texts[:BATCH * 2])

    assert set(table) == {"coe_stage1", *PEERS}
    chance = 1 / len(set(labels))
    for name, row in table.items():
        assert 3 * chance < row["accuracy"] <= 1 and 0 < row["macro_f1"] <= 1, f"{name} classifies far better than chance"
        assert set(row["decisions_per_s"]) == {"batch_1", f"batch_{BATCH}"} and min(row["decisions_per_s"].values()) > 0
    assert table["coe_stage1"]["vs_stage1"] == {"accuracy": 0.0, "macro_f1": 0.0, "batch_1": 1.0, f"batch_{BATCH}": 1.0}
    knn = table["knn_minilm"]
    assert knn["vs_stage1"]["batch_1"] == round(knn["decisions_per_s"]["batch_1"] / table["coe_stage1"]["decisions_per_s"]["batch_1"], 3)
