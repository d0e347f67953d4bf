"""Preference pairs: JSONL rows validated line by line, in two accepted shapes.

1. ``{"prompt", "chosen", "rejected", "category"?, "capability"?}`` — ``chosen`` and ``rejected``
   are two responses to ``prompt``. A row with ``capability`` says "chosen is better in terms
   of that capability"; a row without one is an overall preference.
2. HH-style transcripts: no ``prompt``; ``chosen`` and ``rejected`` are whole dialogues of
   ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` turns that differ only in the final Assistant turn. The
   shared prompt is the dialogue before that turn; the responses are the two final turns.

Anything else is a :class:`DataError` naming the file, the line and the fix.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from router_training.jsonl import DataError, jsonl_objects
from services.rewards.spec import DEFAULT_CAPABILITIES, GLOBAL_GROUP
from services.router.config import DEFAULT_CATEGORIES

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "reward"
TRAIN_PATH = DATA_DIR / "train.jsonl"
HELDOUT_PATH = DATA_DIR / "heldout.jsonl"
ANSWERS_PATH = DATA_DIR / "answers.jsonl"
HUMAN_TURN = "\n\nHuman:"
ASSISTANT_TURN = "\n\nAssistant:"

__all__ = ["DataError", "PreferencePair", "read_pairs", "split_transcript", "calibration_split", "with_categories"]


@dataclass(frozen=True)
class PreferencePair:
    prompt: str
    chosen: str
    rejected: str
    category: str | None  # None: unknown, to be filled by the outer router or "global"
    capability: str | None  # None: an overall preference
    where: str  # "file:line", for messages


def split_transcript(chosen: str, rejected: str, where: str) -> tuple[str, str, str]:
    """``(prompt, chosen response, rejected response)`` of two HH transcripts."""
    parts = []
    for field, text in (("chosen", chosen), ("rejected", rejected)):
        cut = text.rfind(ASSISTANT_TURN)
        if cut < 0:
            raise DataError(
                f"{where}: '{field}' has no '\\n\\nAssistant:' turn; give a 'prompt' field, "
                "or full HH transcripts with Human/Assistant turns"
            )
        parts.append((text[:cut].strip(), text[cut + len(ASSISTANT_TURN) :].strip()))
    (prompt, chosen_response), (other_prompt, rejected_response) = parts
    if prompt != other_prompt:
        raise DataError(
            f"{where}: the chosen and rejected transcripts have different prompts; everything before "
            "the final Assistant turn must be identical in both"
        )
    return prompt, chosen_response, rejected_response


def _text(row: dict[str, Any], field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str):
        raise DataError(f"{where}: '{field}' must be a string, got {type(value).__name__}")
    return value


def parse_row(
    row: Any, where: str, taxonomy: Sequence[str], capabilities: Sequence[str]
) -> PreferencePair:
    """One validated pair from one decoded JSON line."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: each line must be a JSON object with 'chosen' and 'rejected'")
    chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
    if "prompt" in row:
        prompt = _text(row, "prompt", where)
    else:
        prompt, chosen, rejected = split_transcript(chosen, rejected, where)
    for field, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            raise DataError(f"{where}: '{field}' is empty; every pair needs a prompt and two non-empty responses")
    if chosen.strip() == rejected.strip():
        raise DataError(f"{where}: 'chosen' and 'rejected' are the same text; a pair needs two different responses")
    category = row.get("category")
    if category is not None and category not in taxonomy:
        raise DataError(
            f"{where}: category {category!r} is not in the taxonomy {list(taxonomy)}; "
            "use one of them or leave 'category' out"
        )
    capability = row.get("capability")
    if capability is not None and capability not in capabilities:
        raise DataError(
            f"{where}: unknown capability {capability!r}; use one of {list(capabilities)}, "
            "or leave 'capability' out for an overall preference"
        )
    return PreferencePair(prompt, chosen, rejected, category, capability, where)


def read_pairs(
    path: Path,
    taxonomy: Sequence[str] = DEFAULT_CATEGORIES,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
) -> list[PreferencePair]:
    """Every pair of a JSONL file, or :class:`DataError` at the first bad line."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: preference file not found")
    pairs = [parse_row(row, where, taxonomy, capabilities) for where, row in jsonl_objects(path)]
    if not pairs:
        raise DataError(f"{path}: no preference pairs in the file")
    return pairs


def calibration_split(
    pairs: Sequence[PreferencePair], fraction: float, seed: int
) -> tuple[list[PreferencePair], list[PreferencePair]]:
    """``(fit, calibration)``, split by prompt so no calibration prompt is fitted on.

    Prompts are drawn per category (unknown categories form one stratum), so every category
    with more than one prompt keeps at least one in each part.
    """
    by_category: dict[str | None, list[str]] = {}
    for pair in pairs:
        prompts = by_category.setdefault(pair.category, [])
        if pair.prompt not in prompts:
            prompts.append(pair.prompt)
    rng = random.Random(seed)
    held: set[str] = set()
    for category in sorted(by_category, key=lambda name: name or ""):
        prompts = sorted(by_category[category])
        rng.shuffle(prompts)
        count = min(len(prompts) - 1, max(1, round(len(prompts) * fraction))) if len(prompts) > 1 else 0
        held.update(prompts[:count])
    fit = [pair for pair in pairs if pair.prompt not in held]
    calibration = [pair for pair in pairs if pair.prompt in held]
    return fit, calibration


def with_categories(
    pairs: Sequence[PreferencePair], categorize: Callable[[list[str]], list[str]] | None
) -> list[str]:
    """Each pair's category: its own field, else ``categorize(prompts)``, else ``global``."""
    result: list[str | None] = [pair.category for pair in pairs]
    missing = [index for index, category in enumerate(result) if category is None]
    if missing and categorize is not None:
        predicted = categorize([pairs[index].prompt for index in missing])
        if len(predicted) != len(missing):
            raise ValueError(f"categorize returned {len(predicted)} categories for {len(missing)} prompts")
        for index, category in zip(missing, predicted):
            result[index] = category
    return [category or GLOBAL_GROUP for category in result]
