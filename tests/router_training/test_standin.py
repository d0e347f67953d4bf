"""The HH-style stand-in preference data: reproducible, loadable where it should be, refused
exactly where a fault was injected, and split so held-out topics are never trained on."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from router_training.jsonl import DataError
from router_training.reward.data import parse_row
from router_training.reward.standin import (
    SCENARIOS_PATH,
    SUMMARY_FILE,
    StandinSettings,
    generate,
    load_scenarios,
    split_scenarios,
    write_standin,
)
from services.rewards.spec import DEFAULT_CAPABILITIES
from services.router.config import DEFAULT_CATEGORIES

SMALL = StandinSettings(train_pairs=300, heldout_pairs=100)
FINAL_ASSISTANT = "\n\nAssistant:"
HUMAN = "\n\nHuman: "


@pytest.fixture(scope="module")
def written(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    folder = tmp_path_factory.mktemp("standin")
    return folder, write_standin(folder)


def rows_of(path: Path) -> list[dict[str, str]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def prompt_chars(row: dict[str, str]) -> int:
    return row["chosen"].rfind(FINAL_ASSISTANT)


def test_generation_is_deterministic_per_seed() -> None:
    first, again = generate(SMALL), generate(SMALL)
    assert json.dumps(first) == json.dumps(again)
    other = generate(StandinSettings(train_pairs=300, heldout_pairs=100, seed=1))
    assert other["train"] != first["train"] and other["heldout"] != first["heldout"]
    assert all(set(row) == {"chosen", "rejected"} for rows in first.values() for row in rows)


def test_files_match_generate_and_the_summary_on_disk(written: tuple[Path, dict]) -> None:
    folder, summary = written
    rows = generate(StandinSettings())
    for name, part in summary["files"].items():
        assert rows_of(folder / part["file"]) == rows[name]
        assert part["rows"] == len(rows[name])
    assert json.loads((folder / SUMMARY_FILE).read_text(encoding="utf-8")) == summary


def test_loader_refuses_exactly_the_injected_faults(written: tuple[Path, dict]) -> None:
    folder, summary = written
    for part in summary["files"].values():
        path = folder / part["file"]
        refused = {}
        for number, row in enumerate(rows_of(path), 1):
            try:
                parse_row(row, f"{path}:{number}", DEFAULT_CATEGORIES, DEFAULT_CAPABILITIES)
            except DataError as error:
                refused[number] = error.reason
        injected = {line: kind for kind, fault in part["faults"].items() for line in fault["lines"]}
        assert refused == injected
        assert all(fault["count"] > 0 for fault in part["faults"].values()), part["faults"]
        assert part["valid_rows"] == part["rows"] - len(injected)
        assert not set(injected) & set(part["label_flips"]["lines"])


def test_heldout_topics_never_come_from_training_scenarios(written: tuple[Path, dict]) -> None:
    folder, summary = written
    train, heldout = split_scenarios(load_scenarios(), StandinSettings().seed)
    assert summary["files"]["train"]["scenarios"] == [scenario.id for scenario in train]
    assert summary["files"]["heldout"]["scenarios"] == [scenario.id for scenario in heldout]
    heldout_rows = rows_of(folder / summary["files"]["heldout"]["file"])
    everything = "\0".join(row["chosen"] + "\0" + row["rejected"] for row in heldout_rows)
    for scenario in train:
        texts = [*scenario.openings, *scenario.good, *scenario.bad]
        texts += [text for exchange in scenario.context for text in (exchange.human, exchange.assistant)]
        leaked = [text for text in texts if text in everything]
        assert not leaked, f"{scenario.id}: {leaked[:2]}"
    heldout_humans = [
        text for scenario in heldout for text in (*scenario.openings, *(e.human for e in scenario.context))
    ]
    faulty = {line for fault in summary["files"]["heldout"]["faults"].values() for line in fault["lines"]}
    for number, row in enumerate(heldout_rows, 1):
        if number in faulty:
            continue  # a retyped word or a double post need not match the scenario's text
        text = row["chosen"]
        cut = text.rfind(FINAL_ASSISTANT)
        final_human = text[text.rfind(HUMAN, 0, cut) + len(HUMAN) : cut]
        assert any(human in final_human for human in heldout_humans), final_human[:200]


def test_a_quarter_of_the_valid_rows_are_long(written: tuple[Path, dict]) -> None:
    folder, summary = written
    for part in summary["files"].values():
        faulty = {line for fault in part["faults"].values() for line in fault["lines"]}
        rows = [row for number, row in enumerate(rows_of(folder / part["file"]), 1) if number not in faulty]
        long = sum(prompt_chars(row) > 1500 for row in rows)
        assert long >= 0.2 * len(rows)
        assert long == part["long_rows"]["count"]


def test_defaults_give_over_two_thousand_valid_pairs(written: tuple[Path, dict]) -> None:
    _, summary = written
    files = summary["files"].values()
    assert sum(part["valid_rows"] for part in files) >= 2000
    for part in files:
        flips = part["label_flips"]["count"]
        assert abs(flips - 0.12 * part["valid_rows"]) <= 1
        assert sum(part["pair_types"].values()) == part["valid_rows"]


def test_bad_scenarios_are_named(tmp_path: Path) -> None:
    scenarios = json.loads(SCENARIOS_PATH.read_text(encoding="utf-8"))
    scenarios["scenarios"][3]["good"] = scenarios["scenarios"][3]["good"][:2]
    path = tmp_path / "scenarios.json"
    path.write_text(json.dumps(scenarios), encoding="utf-8")
    with pytest.raises(DataError, match=scenarios["scenarios"][3]["id"]):
        load_scenarios(path)
    scenarios = json.loads(SCENARIOS_PATH.read_text(encoding="utf-8"))
    scenarios["scenarios"][5]["id"] = scenarios["scenarios"][4]["id"]
    path.write_text(json.dumps(scenarios), encoding="utf-8")
    with pytest.raises(DataError, match="twice"):
        load_scenarios(path)
