"""Router training data: JSONL of ``{"text"|"messages", "category"}``, validated line by line.

The seed prompts live in ``router_training/data/router/seed/<category>.jsonl``; ``make_splits``
divides them, per category and reproducibly, into the three named splits: ``train`` (fitting),
``calibration`` (temperature, τ, the out-of-distribution threshold, λ) and ``test`` (reporting only).

Besides the taxonomy's categories, a row may carry the reserved label ``out_of_scope``: chit-chat
and requests without a task, which no category fits. The category head never learns them as a
class; they teach the embedder what lies outside the categories and set the threshold of the
out-of-distribution check, so such requests go to the general expert.

``external.jsonl`` is an evaluation set written apart from the seed data (other authors' styles,
no shared templates); it is only ever reported, never trained or tuned on. Its rows also carry a
``kind`` (``open_ended``, ``math_word_problem``, ``code_writing``, ``chit_chat``) for the report.
"""

from __future__ import annotations

import json
import os
import random
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from router_training.jsonl import DataError, jsonl_objects

__all__ = [
    "OUT_OF_SCOPE", "DataError", "Example", "messages_of", "read_examples", "make_splits", "write_jsonl_atomic"
]

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "router"
SEED_DIR = DATA_DIR / "seed"
EXTERNAL_FILE = DATA_DIR / "external.jsonl"
SPLITS = ("train", "calibration", "test")
OUT_OF_SCOPE = "out_of_scope"  # reserved label: no category fits (chit-chat, requests without a task)
SPLIT_FRACTIONS = {"train": 0.7, "calibration": 0.15, "test": 0.15}
ROLES = {"system", "developer", "user", "assistant"}


@dataclass(frozen=True)
class Example:
    messages: tuple[dict[str, str], ...]
    category: str
    raw: dict[str, Any]

    @property
    def in_scope(self) -> bool:
        return self.category != OUT_OF_SCOPE

    @property
    def kind(self) -> str | None:
        """The prompt's form in an evaluation set (``external.jsonl``), if it names one."""
        kind = self.raw.get("kind")
        return kind if isinstance(kind, str) else None


def messages_of(row: dict[str, Any], where: str) -> tuple[dict[str, str], ...]:
    """A row's conversation: ``text`` is one user turn, ``messages`` is used as given."""
    if isinstance(row.get("text"), str):
        if not row["text"].strip():
            raise DataError(f"{where}: 'text' is empty")
        return ({"role": "user", "content": row["text"]},)
    messages = row.get("messages")
    if not isinstance(messages, list) or not messages:
        raise DataError(f"{where}: needs a string 'text' or a non-empty 'messages' list")
    result = []
    for index, message in enumerate(messages):
        if not isinstance(message, dict) or message.get("role") not in ROLES or not isinstance(message.get("content"), str):
            raise DataError(f"{where}: messages[{index}] needs a role in {sorted(ROLES)} and string content")
        result.append({"role": message["role"], "content": message["content"]})
    users = [message for message in result if message["role"] == "user"]
    if not users or not users[-1]["content"].strip():
        raise DataError(f"{where}: the conversation has no user text to route on")
    return tuple(result)


def read_examples(path: Path, taxonomy: tuple[str, ...], *, require_category: bool = True) -> list[Example]:
    """Every row of ``path``; a category must be in ``taxonomy`` or be ``out_of_scope``."""
    examples = []
    for where, row in jsonl_objects(path):
        category = row.get("category")
        if require_category and category not in taxonomy and category != OUT_OF_SCOPE:
            raise DataError(
                f"{where}: category {category!r} is neither in the taxonomy {list(taxonomy)} nor {OUT_OF_SCOPE!r}"
            )
        examples.append(Example(messages=messages_of(row, where), category=category, raw=row))
    return examples


def write_jsonl_atomic(path: Path, rows: list[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        for row in rows:
            handle.write(json.dumps(row, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def make_splits(seed_dir: Path, out_dir: Path, taxonomy: tuple[str, ...], seed: int = 0) -> dict[str, int]:
    """Stratified, reproducible split of every ``<category>.jsonl`` in ``seed_dir``
    (and of ``out_of_scope.jsonl``, when there is one)."""
    rng = random.Random(seed)
    splits: dict[str, list[dict[str, Any]]] = {name: [] for name in SPLITS}
    optional = (OUT_OF_SCOPE,) if (seed_dir / f"{OUT_OF_SCOPE}.jsonl").is_file() else ()
    for category in (*taxonomy, *optional):
        path = seed_dir / f"{category}.jsonl"
        if not path.is_file():
            raise DataError(f"no seed data for category '{category}': {path} is missing")
        rows = [example.raw for example in read_examples(path, taxonomy)]
        rng.shuffle(rows)
        n_train = round(len(rows) * SPLIT_FRACTIONS["train"])
        n_calibration = round(len(rows) * SPLIT_FRACTIONS["calibration"])
        splits["train"] += rows[:n_train]
        splits["calibration"] += rows[n_train : n_train + n_calibration]
        splits["test"] += rows[n_train + n_calibration :]
    for name, rows in splits.items():
        rng.shuffle(rows)
        write_jsonl_atomic(out_dir / f"{name}.jsonl", rows)
    return {name: len(rows) for name, rows in splits.items()}
