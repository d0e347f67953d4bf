"""The router's seed data and splits: complete, consistent, and checked on the way in."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import pytest

from router_training.router.data import (
    DATA_DIR,
    EXTERNAL_FILE,
    OUT_OF_SCOPE,
    SEED_DIR,
    SPLITS,
    DataError,
    make_splits,
    read_examples,
)
from services.router.config import DEFAULT_CATEGORIES


def test_committed_splits_are_what_make_splits_writes(tmp_path: Path) -> None:
    make_splits(SEED_DIR, tmp_path, DEFAULT_CATEGORIES)
    for name in SPLITS:
        assert (tmp_path / f"{name}.jsonl").read_bytes() == (DATA_DIR / f"{name}.jsonl").read_bytes(), name


def test_every_category_has_enough_varied_prompts() -> None:
    for category in DEFAULT_CATEGORIES:
        examples = read_examples(SEED_DIR / f"{category}.jsonl", DEFAULT_CATEGORIES)
        assert len(examples) >= 120, category
        multi_turn = [example for example in examples if len(example.messages) > 1]
        assert len(multi_turn) >= 20, category
        assert all(example.messages[-1]["role"] == "user" for example in examples)
        lengths = sorted(len(example.messages[-1]["content"]) for example in examples)
        assert lengths[0] < 60 and lengths[-1] > 500, category  # one line to several paragraphs
        assert {example.category for example in examples} == {category}


def test_chit_chat_and_task_less_requests_are_seeded_as_out_of_scope() -> None:
    examples = read_examples(SEED_DIR / f"{OUT_OF_SCOPE}.jsonl", DEFAULT_CATEGORIES)
    assert len(examples) >= 150 and {example.category for example in examples} == {OUT_OF_SCOPE}
    assert not any(example.in_scope for example in examples)
    last_turns = {example.messages[-1]["content"].strip().lower() for example in examples}
    assert {"ok", "thanks", "hi"} <= last_turns  # the short ones real traffic is full of
    assert sum(len(example.messages) > 1 for example in examples) >= 20  # "thanks" after a real answer


def words(text: str) -> list[str]:
    return "".join(character.lower() if character.isalnum() else " " for character in text).split()


def test_the_external_set_is_written_apart_from_the_seed_data() -> None:
    external = read_examples(EXTERNAL_FILE, DEFAULT_CATEGORIES)
    kinds = Counter(example.kind for example in external)
    assert len(external) >= 380 and set(kinds) == {"open_ended", "math_word_problem", "code_writing", "chit_chat"}
    assert all(kinds[kind] >= 40 for kind in kinds), kinds
    open_ended = Counter(example.category for example in external if example.kind == "open_ended")
    assert set(open_ended) == set(DEFAULT_CATEGORIES) and min(open_ended.values()) >= 25
    # No shared prompt and no shared template: no run of eight words in common with any seed prompt.
    span = 8
    seed_runs = set()
    for path in SEED_DIR.glob("*.jsonl"):
        for example in read_examples(path, DEFAULT_CATEGORIES):
            for message in example.messages:
                tokens = words(message["content"])
                seed_runs.update(tuple(tokens[i : i + span]) for i in range(len(tokens) - span + 1))
    shared = []
    for example in external:
        tokens = words(example.messages[-1]["content"])
        runs = {tuple(tokens[i : i + span]) for i in range(len(tokens) - span + 1)}
        shared += [" ".join(run) for run in runs & seed_runs]
    assert not shared, shared[:5]


def test_splits_are_disjoint_and_stratified() -> None:
    seen: dict[str, str] = {}
    counts = {}
    for name in SPLITS:
        examples = read_examples(DATA_DIR / f"{name}.jsonl", DEFAULT_CATEGORIES)
        counts[name] = Counter(example.category for example in examples)
        for example in examples:
            key = json.dumps(example.raw, sort_keys=True)
            assert key not in seen, f"in both {seen.get(key)} and {name}"
            seen[key] = name
    for category in (*DEFAULT_CATEGORIES, OUT_OF_SCOPE):
        assert counts["calibration"][category] >= 15 and counts["test"][category] >= 15


def test_unknown_category_names_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"text": "hi", "category": "math"}\n{"text": "x", "category": "poetry"}\n')
    with pytest.raises(DataError, match=r"data.jsonl:2: category 'poetry' is neither in the taxonomy .* nor 'out_of_scope'"):
        read_examples(path, DEFAULT_CATEGORIES)


def test_malformed_lines_name_the_line(tmp_path: Path) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text('{"messages": [{"role": "wizard", "content": "x"}], "category": "math"}\n')
    with pytest.raises(DataError, match=r"data.jsonl:1: messages\[0\] needs a role"):
        read_examples(path, DEFAULT_CATEGORIES)


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('{"text": "hi", "category": "math"', r"data.jsonl:1: not valid JSON"),
        ('{"text": "   ", "category": "math"}', r"data.jsonl:1: 'text' is empty"),
        ('{"messages": [{"role": "user", "content": ""}], "category": "math"}', r"data.jsonl:1: the conversation has no user text"),
    ],
)
def test_malformed_or_empty_lines_name_the_line(tmp_path: Path, line: str, message: str) -> None:
    path = tmp_path / "data.jsonl"
    path.write_text(line + "\n")
    with pytest.raises(DataError, match=message):
        read_examples(path, DEFAULT_CATEGORIES)


def test_too_few_examples_for_a_category_is_named(tmp_path: Path) -> None:
    from router_training.router.train import Splits

    for name in SPLITS:
        rows = [{"text": f"solve {i}", "category": "math"} for i in range(6)] + [{"text": "write a poem", "category": "writing"}]
        (tmp_path / f"{name}.jsonl").write_text("\n".join(json.dumps(row) for row in rows) + "\n")
    with pytest.raises(DataError, match=r"train.jsonl: too few examples for .*'writing': 1"):
        Splits.read(tmp_path, ("math", "writing"))
