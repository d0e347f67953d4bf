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

import dataclasses
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

from router_training.jsonl import DataError, jsonl_rows
from services.rewards.spec import DEFAULT_CAPABILITIES, GLOBAL_GROUP
from services.router.config import DEFAULT_CATEGORIES

DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "reward"
TRAIN_PATH = DATA_DIR / "train.jsonl"
HELDOUT_PATH = DATA_DIR / "heldout.jsonl"
ANSWERS_PATH = DATA_DIR / "answers.jsonl"
HUMAN_TURN = "\n\nHuman:"
ASSISTANT_TURN = "\n\nAssistant:"
MAX_EXAMPLE_LINES = 5  # per reason, in the skipped-rows report

__all__ = [
    "DataError", "PairFile", "PreferencePair", "SkippedRows", "calibration_split", "load_pairs", "read_pairs",
    "split_transcript", "with_categories",
]


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
                "or full HH transcripts with Human/Assistant turns",
                "no_assistant_turn",
            )
        parts.append((text[:cut].strip(), text[cut + len(ASSISTANT_TURN) :].strip()))
    (prompt, chosen_response), (other_prompt, rejected_response) = parts
    if prompt != other_prompt:
        raise DataError(
            f"{where}: the chosen and rejected transcripts have different prompts; everything before "
            "the final Assistant turn must be identical in both",
            "different_prompts",
        )
    return prompt, chosen_response, rejected_response


def _text(row: dict[str, Any], field: str, where: str) -> str:
    value = row.get(field)
    if not isinstance(value, str):
        raise DataError(f"{where}: '{field}' must be a string, got {type(value).__name__}", "not_a_string")
    return value


def parse_row(
    row: Any, where: str, taxonomy: Sequence[str], capabilities: Sequence[str]
) -> PreferencePair:
    """One validated pair from one decoded JSON line."""
    if not isinstance(row, dict):
        raise DataError(f"{where}: each line must be a JSON object with 'chosen' and 'rejected'", "not_object")
    chosen, rejected = _text(row, "chosen", where), _text(row, "rejected", where)
    if "prompt" in row:
        prompt = _text(row, "prompt", where)
    else:
        prompt, chosen, rejected = split_transcript(chosen, rejected, where)
    for field, value in (("prompt", prompt), ("chosen", chosen), ("rejected", rejected)):
        if not value.strip():
            raise DataError(
                f"{where}: '{field}' is empty; every pair needs a prompt and two non-empty responses",
                "empty_prompt" if field == "prompt" else "empty_response",
            )
    if chosen.strip() == rejected.strip():
        raise DataError(
            f"{where}: 'chosen' and 'rejected' are the same text; a pair needs two different responses", "same_responses"
        )
    category = row.get("category")
    if category is not None and category not in taxonomy:
        raise DataError(
            f"{where}: category {category!r} is not in the taxonomy {list(taxonomy)}; "
            "use one of them or leave 'category' out",
            "unknown_category",
        )
    capability = row.get("capability")
    if capability is not None and capability not in capabilities:
        raise DataError(
            f"{where}: unknown capability {capability!r}; use one of {list(capabilities)}, "
            "or leave 'capability' out for an overall preference",
            "unknown_capability",
        )
    return PreferencePair(prompt, chosen, rejected, category, capability, where)


def read_pairs(
    path: Path,
    taxonomy: Sequence[str] = DEFAULT_CATEGORIES,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
) -> list[PreferencePair]:
    """Every pair of a JSONL file, or :class:`DataError` at the first bad line."""
    return load_pairs(path, taxonomy, capabilities).pairs


@dataclass
class SkippedRows:
    """The rows a lenient read left out: how many of each kind of fault, with example lines."""

    rows: int = 0  # every non-blank line of the file, good and bad
    counts: dict[str, int] = dataclasses.field(default_factory=dict)
    example_lines: dict[str, list[int]] = dataclasses.field(default_factory=dict)

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def share(self) -> float:
        return self.total / self.rows if self.rows else 0.0

    def add(self, error: DataError, where: str) -> None:
        self.counts[error.reason] = self.counts.get(error.reason, 0) + 1
        examples = self.example_lines.setdefault(error.reason, [])
        if len(examples) < MAX_EXAMPLE_LINES:
            examples.append(int(where.rsplit(":", 1)[1]))

    def as_dict(self) -> dict[str, Any]:
        return {
            "rows": self.rows, "skipped": self.total, "share": round(self.share, 4),
            "by_reason": {reason: {"count": count, "example_lines": self.example_lines[reason]}
                          for reason, count in sorted(self.counts.items())},
        }


@dataclass(frozen=True)
class PairFile:
    pairs: list[PreferencePair]
    skipped: SkippedRows


def load_pairs(
    path: Path,
    taxonomy: Sequence[str] = DEFAULT_CATEGORIES,
    capabilities: Sequence[str] = DEFAULT_CAPABILITIES,
    *,
    max_skipped_share: float | None = None,
) -> PairFile:
    """The pairs of a JSONL file.

    Strict by default (``max_skipped_share=None``): the first bad row raises its
    :class:`DataError`. With a share, bad rows are skipped and counted by reason, because real
    preference sets hold a few (an empty final reply, transcripts that differ before the last
    turn), and refusing a whole file for them leaves a user writing a cleaning script. Skipping
    more than that share of the rows raises: the file is then not "mostly good".
    """
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: preference file not found", "not_found")
    pairs: list[PreferencePair] = []
    skipped = SkippedRows()
    for where, row in jsonl_rows(path):
        skipped.rows += 1
        try:
            if isinstance(row, DataError):
                raise row
            pairs.append(parse_row(row, where, taxonomy, capabilities))
        except DataError as exc:
            if max_skipped_share is None:
                raise
            skipped.add(exc, where)
    if max_skipped_share is not None and skipped.share > max_skipped_share:
        reasons = ", ".join(f"{reason} {count}" for reason, count in sorted(skipped.counts.items()))
        raise DataError(
            f"{path}: {skipped.total} of {skipped.rows} rows are invalid ({skipped.share:.0%}: {reasons}), more than "
            f"the {max_skipped_share:.0%} that skipping allows (max_skipped_share); fix the file, or raise the share",
            "too_many_invalid",
        )
    if not pairs:
        raise DataError(f"{path}: no preference pairs in the file", "empty_file")
    return PairFile(pairs, skipped)


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
