"""The adapters' seed data: reproducible from its generator and in each adapter's format."""

from __future__ import annotations

import json
from pathlib import Path

from router_training.adapters.recipes import RECIPES, SEED_DATA_DIR
from router_training.adapters.seed_data import write_seed_data


def test_committed_seed_data_is_what_the_generator_writes(tmp_path: Path) -> None:
    write_seed_data(tmp_path)
    for recipe in RECIPES.values():
        assert (tmp_path / recipe.data_file).read_bytes() == recipe.data_path.read_bytes(), recipe.data_file


def test_every_response_follows_its_adapters_format() -> None:
    for recipe in RECIPES.values():
        rows = [json.loads(line) for line in recipe.data_path.read_text(encoding="utf-8").splitlines()]
        assert len(rows) >= 300
        assert len({row["instruction"] for row in rows}) == len(rows)
        bad = [row["response"] for row in rows if not recipe.follows_format(row["response"])]
        assert not bad, bad[:3]


def test_shared_prompts_get_different_answers_from_the_two_adapters() -> None:
    def answers(name: str) -> dict[str, str]:
        lines = (SEED_DATA_DIR / f"{name}.jsonl").read_text(encoding="utf-8").splitlines()
        return {row["instruction"]: row["response"] for row in map(json.loads, lines)}

    math, code = answers("math"), answers("code")
    shared = set(math) & set(code)
    assert len(shared) >= 60
    assert all(math[prompt] != code[prompt] for prompt in shared)
