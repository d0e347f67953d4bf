"""The project's own preference set, derived from hand-written good answers.

``answers.jsonl`` holds ~240 prompts over the eight categories, each with a good answer.
This generator splits them **by prompt** (per category, seeded) into train and held-out
prompts, then writes for every prompt:

- one capability pair per capability: (good answer, the answer corrupted by that
  capability's family in :mod:`router_training.reward.corruptions`), with ``"capability"``;
- ``OVERALL_PER_PROMPT`` overall pairs (no ``"capability"``): the good answer against a
  corruption of a capability drawn at random, from a random stream of its own, so an overall
  pair is a different corruption instance from the capability pair where the family has any
  randomness.

Relevance corruptions borrow answers from the same split only, so a held-out answer never
appears in the training file. Every random choice comes from a ``random.Random`` seeded by
(seed, purpose, prompt), so the output does not depend on row order and is byte-for-byte
reproducible: ``python -m router_training.reward.seed_data`` rewrites the committed files.
"""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any, Sequence

from router_training.reward.corruptions import Answer, corrupt
from router_training.jsonl import DataError, jsonl_objects
from router_training.reward.data import ANSWERS_PATH, DATA_DIR
from router_training.router.data import write_jsonl_atomic
from services.rewards.spec import DEFAULT_CAPABILITIES
from services.router.config import DEFAULT_CATEGORIES

SEED = 0
HELDOUT_FRACTION = 0.2  # of each category's prompts
OVERALL_PER_PROMPT = 3
SPLIT_FILES = {"train": "train.jsonl", "heldout": "heldout.jsonl"}


def read_answers(path: Path = ANSWERS_PATH, taxonomy: Sequence[str] = DEFAULT_CATEGORIES) -> list[Answer]:
    """``{"prompt", "answer", "category"}`` rows; prompts must be unique."""
    answers, seen = [], set()
    for where, row in jsonl_objects(Path(path)):
        for field in ("prompt", "answer"):
            if not isinstance(row.get(field), str) or not row[field].strip():
                raise DataError(f"{where}: '{field}' must be a non-empty string")
        if row.get("category") not in taxonomy:
            raise DataError(f"{where}: category {row.get('category')!r} is not in the taxonomy {list(taxonomy)}")
        if row["prompt"] in seen:
            raise DataError(f"{where}: prompt repeated; each prompt appears once")
        seen.add(row["prompt"])
        answers.append(Answer(prompt=row["prompt"], answer=row["answer"], category=row["category"]))
    return answers


def split_answers(answers: Sequence[Answer], fraction: float, seed: int) -> tuple[list[Answer], list[Answer]]:
    """``(train, heldout)``: a seeded, per-category share of the prompts is held out."""
    rng = random.Random(f"{seed}:split")
    heldout: set[str] = set()
    for category in sorted({answer.category for answer in answers}):
        prompts = sorted(answer.prompt for answer in answers if answer.category == category)
        rng.shuffle(prompts)
        heldout.update(prompts[: round(len(prompts) * fraction)])
    return (
        [answer for answer in answers if answer.prompt not in heldout],
        [answer for answer in answers if answer.prompt in heldout],
    )


def preference_rows(
    answers: Sequence[Answer], capabilities: Sequence[str], seed: int, overall_per_prompt: int, label: str
) -> list[dict[str, Any]]:
    """Capability and overall pairs for every answer, in a seeded shuffled order."""
    rows: list[dict[str, Any]] = []
    for answer in answers:
        base = {"prompt": answer.prompt, "chosen": answer.answer}
        for capability in capabilities:
            rng = random.Random(f"{seed}:capability:{capability}:{answer.prompt}")
            rejected = corrupt(capability, answer, rng, answers)
            rows.append({**base, "rejected": rejected, "category": answer.category, "capability": capability})
        drawn = random.Random(f"{seed}:overall:{answer.prompt}").sample(list(capabilities), k=overall_per_prompt)
        for capability in drawn:
            rng = random.Random(f"{seed}:overall:{capability}:{answer.prompt}")
            rows.append({**base, "rejected": corrupt(capability, answer, rng, answers), "category": answer.category})
    random.Random(f"{seed}:order:{label}").shuffle(rows)
    return rows


def write_seed_data(
    out_dir: Path = DATA_DIR,
    answers_path: Path = ANSWERS_PATH,
    *,
    seed: int = SEED,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
) -> dict[str, int]:
    """Write ``train.jsonl`` and ``heldout.jsonl`` (atomically); returns the row counts."""
    train, heldout = split_answers(read_answers(answers_path), HELDOUT_FRACTION, seed)
    counts = {}
    for label, answers in (("train", train), ("heldout", heldout)):
        rows = preference_rows(answers, capabilities, seed, OVERALL_PER_PROMPT, label)
        write_jsonl_atomic(Path(out_dir) / SPLIT_FILES[label], rows)
        counts[label] = len(rows)
    return counts


if __name__ == "__main__":
    print(json.dumps(write_seed_data()))
