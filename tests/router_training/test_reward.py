"""The DMoERM reward model: its data, its seed set, its training job, CLI and runtime scorer.

Everything is real: the MiniLM encoder from its package, PEFT adapters, safetensors files.
One training runs, through the ``coe train reward`` CLI, just long enough to learn (the session's
``reward_model_dir``); it is checked for its layout, metrics, learning, scoring and the refusal of
corrupt files.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from router_training.reward.data import HELDOUT_PATH, TRAIN_PATH, DataError, load_pairs, read_pairs
from router_training.reward.seed_data import SPLIT_FILES, read_answers, write_seed_data
from router_training.reward.train import METRIC_KEYS, RewardTrainingArgs, train_reward_model
from services.artifacts import ArtifactError
from services.rewards.spec import DEFAULT_CAPABILITIES
from tests.training_runs import REWARD_TEST_HPARAMS

GOOD = {"prompt": "What is 2 + 2?", "chosen": "2 + 2 = 4.", "rejected": "2 + 2 = 5.", "category": "math"}


def write_lines(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((row if isinstance(row, str) else json.dumps(row)) + "\n" for row in rows), encoding="utf-8")
    return path


# --- data ----------------------------------------------------------------------------------


def test_reads_prompt_rows_and_hh_transcripts(tmp_path: Path) -> None:
    hh = {
        "chosen": "\n\nHuman: Hi!\n\nAssistant: Hello.\n\nHuman: Capital of France?\n\nAssistant: Paris.",
        "rejected": "\n\nHuman: Hi!\n\nAssistant: Hello.\n\nHuman: Capital of France?\n\nAssistant: Berlin.",
    }
    path = write_lines(tmp_path / "pairs.jsonl", [GOOD, {**GOOD, "capability": "correctness"}, "", hh])
    plain, capability, transcript = read_pairs(path)
    assert (plain.category, plain.capability) == ("math", None)
    assert capability.capability == "correctness"
    assert transcript.prompt == "Human: Hi!\n\nAssistant: Hello.\n\nHuman: Capital of France?"
    assert (transcript.chosen, transcript.rejected, transcript.category) == ("Paris.", "Berlin.", None)
    assert transcript.where == f"{path}:4"


@pytest.mark.parametrize(
    ("row", "match"),
    [
        ('{"prompt": "x", "chosen": ', "not valid JSON"),
        ({**GOOD, "chosen": "   "}, "'chosen' is empty"),
        ({**GOOD, "prompt": ""}, "'prompt' is empty"),
        ({**GOOD, "rejected": GOOD["chosen"]}, "are the same text"),
        ({**GOOD, "category": "cooking"}, "category 'cooking' is not in the taxonomy"),
        ({**GOOD, "capability": "politeness"}, "unknown capability 'politeness'"),
        ({"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}, "different prompts"),
        ({"chosen": "just text", "rejected": "other text"}, "no '\\\\n\\\\nAssistant:' turn"),
        (["not", "an", "object"], "must be a JSON object"),
    ],
)
def test_bad_rows_are_refused_with_file_and_line(tmp_path: Path, row: Any, match: str) -> None:
    path = write_lines(tmp_path / "bad.jsonl", [GOOD, row])
    with pytest.raises(DataError, match=match) as error:
        read_pairs(path)
    assert f"{path}:2:" in str(error.value)


def test_skip_invalid_counts_and_skips_exactly_the_bad_rows(tmp_path: Path) -> None:
    empty = {**GOOD, "chosen": " "}
    differing = {"chosen": "\n\nHuman: a\n\nAssistant: b", "rejected": "\n\nHuman: c\n\nAssistant: d"}
    rows: list[Any] = [GOOD, empty, GOOD, differing, '{"prompt": ', *[empty] * 6, GOOD, {**GOOD, "rejected": GOOD["chosen"]}]
    path = write_lines(tmp_path / "pairs.jsonl", rows)
    with pytest.raises(DataError, match=f"{path}:2: 'chosen' is empty"):
        load_pairs(path)  # strict unless asked: the first bad row stops the read

    loaded = load_pairs(path, max_skipped_share=0.9)
    assert [pair.where for pair in loaded.pairs] == [f"{path}:{line}" for line in (1, 3, 12)], "exactly the good rows"
    assert loaded.skipped.as_dict() == {
        "rows": 13, "skipped": 10, "share": round(10 / 13, 4),
        "by_reason": {
            "different_prompts": {"count": 1, "example_lines": [4]},
            "empty_response": {"count": 7, "example_lines": [2, 6, 7, 8, 9]},  # five examples at most
            "not_json": {"count": 1, "example_lines": [5]},
            "same_responses": {"count": 1, "example_lines": [13]},
        },
    }


def test_skipping_more_than_the_allowed_share_stops_the_read(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "pairs.jsonl", [GOOD] * 7 + [{**GOOD, "chosen": ""}] * 3)
    assert len(load_pairs(path, max_skipped_share=0.3).pairs) == 7
    with pytest.raises(DataError, match=r"3 of 10 rows are invalid \(30%: empty_response 3\), more than the 20%"):
        load_pairs(path, max_skipped_share=0.2)


# --- seed data -----------------------------------------------------------------------------


def test_seed_data_generator_reproduces_the_committed_files(tmp_path: Path) -> None:
    write_seed_data(tmp_path)
    for name in SPLIT_FILES.values():
        assert (tmp_path / name).read_bytes() == (TRAIN_PATH.parent / name).read_bytes(), name


def test_seed_data_splits_by_prompt_and_covers_every_capability() -> None:
    train, heldout = read_pairs(TRAIN_PATH), read_pairs(HELDOUT_PATH)
    assert not {pair.prompt for pair in train} & {pair.prompt for pair in heldout}
    answers = read_answers()
    assert len(answers) >= 240 and len({answer.category for answer in answers}) == 8
    for pairs in (train, heldout):
        capabilities = {pair.capability for pair in pairs}
        assert capabilities == {*DEFAULT_CAPABILITIES, None}
        assert all(pair.chosen != pair.rejected and pair.category for pair in pairs)
    held_answers = {pair.chosen for pair in heldout}
    assert not held_answers & {pair.rejected for pair in train}, "a held-out answer leaked into training"


# --- the session's model, trained through the CLI (conftest.reward_model_dir) -----------------


def cli(*argv: str) -> argparse.Namespace:
    from deployments.cli.reward import register_score, register_train

    parser = argparse.ArgumentParser(prog="coe")
    commands = parser.add_subparsers(dest="command", required=True)
    jobs = commands.add_parser("train").add_subparsers(dest="job", required=True)
    register_train(jobs)
    register_score(commands)
    return parser.parse_args(list(argv))


def test_training_writes_the_artifact_and_exact_metrics(reward_model_dir: Path) -> None:
    manifest = json.loads((reward_model_dir / "manifest.json").read_text())
    assert manifest["kind"] == "reward-model"
    assert {"weights.safetensors", "config.json", "metrics.json", "encoder/config.json"} <= set(manifest["files"])
    assert not list(reward_model_dir.rglob("*.bin")) and not list(reward_model_dir.rglob("*.pt")), "no pickled weights"
    metrics = json.loads((reward_model_dir / "metrics.json").read_text())
    assert tuple(sorted(metrics)) == tuple(sorted(METRIC_KEYS))
    assert 0 <= metrics["pairwise_accuracy"] <= 1 and 0 <= metrics["baseline_pairwise_accuracy"] <= 1
    assert metrics["n_eval"] == sum(row["n"] for row in metrics["per_category"].values()) > 0
    assert all(set(row) == {"pairwise_accuracy", "n"} for row in metrics["per_category"].values())
    assert metrics["n_train"] > 0 and metrics["seconds"] > 0
    assert metrics["n_train_verifiable"] == 24, "the verifiable tasks' right-over-wrong pairs were trained on"
    assert set(manifest["data"]["verifiable"]) == {"math.jsonl", "coding.jsonl", "extraction.jsonl"}
    checked = metrics["verifiable_heldout"]
    assert set(checked["per_category"]) == {"math", "coding", "extraction"}
    assert checked["n"] == sum(row["n"] for row in checked["per_category"].values()) == REWARD_TEST_HPARAMS["max_eval_pairs"]
    assert set(manifest["metrics"]["phase_seconds"]) == {"phase1", "phase2", "phase3", "evaluation"}


def test_training_ranks_heldout_chosen_answers_above_rejected(reward_model_dir: Path) -> None:
    from services.rewards.model import RewardModel

    metrics = json.loads((reward_model_dir / "metrics.json").read_text())
    assert metrics["pairwise_accuracy"] > 0.6 and metrics["baseline_pairwise_accuracy"] > 0.6, metrics

    # The runtime scorer, fed the held-out overall pairs, ranks them the same way.
    model = RewardModel.load(reward_model_dir)
    pairs = [pair for pair in read_pairs(HELDOUT_PATH) if pair.capability is None][:48]
    prompts = [pair.prompt for pair in pairs] * 2
    scores = model.score(prompts, [p.chosen for p in pairs] + [p.rejected for p in pairs], [p.category for p in pairs] * 2)
    wins = sum(scores[i].reward > scores[i + len(pairs)].reward for i in range(len(pairs)))
    assert wins / len(pairs) > 0.6


def test_loaded_model_scores_in_batches(reward_model_dir: Path) -> None:
    from services.rewards.model import RewardModel

    model = RewardModel.load(reward_model_dir)
    scores = model.score(["What is 2 + 2?"] * 3, ["2 + 2 = 4.", "Paris.", "4"], ["math", None, "global"])
    assert [score.category for score in scores] == ["math", "global", "global"]
    assert all(set(score.capabilities) == set(DEFAULT_CAPABILITIES) for score in scores)
    again = model.score(["What is 2 + 2?"], ["Paris."])
    assert again[0].reward == pytest.approx(scores[1].reward, abs=1e-5), "batching must not change a score"
    with pytest.raises(ValueError, match="not in the reward model's taxonomy"):
        model.score(["x"], ["y"], ["cooking"])
    routed = RewardModel.load(reward_model_dir, categorize=lambda prompts: ["coding"] * len(prompts))
    assert routed.score(["Sort a list"], ["sorted(items)"])[0].category == "coding"


def test_score_command_prints_the_reward_as_json(reward_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = cli("score", "--prompt", "What is 2 + 2?", "--response", "4", "--model", str(reward_model_dir), "--category", "math")
    assert args.run(args) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed["category"] == "math" and set(printed["capabilities"]) == set(DEFAULT_CAPABILITIES)
    assert isinstance(printed["reward"], float)


def test_missing_skips_a_model_that_loads(reward_model_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = cli("train", "reward", "--missing", "--out", str(reward_model_dir))
    assert args.run(args) == 0
    assert f"reward model present at {reward_model_dir}; nothing to do" in capsys.readouterr().out


def test_corrupt_or_partial_artifacts_are_refused(reward_model_dir: Path, tmp_path: Path) -> None:
    from services.rewards.model import RewardModel

    corrupt = tmp_path / "corrupt"
    shutil.copytree(reward_model_dir, corrupt)
    weights = corrupt / "weights.safetensors"
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="weights.safetensors does not match its recorded sha256"):
        RewardModel.load(corrupt)
    weights.unlink()
    with pytest.raises(ArtifactError, match="partial: weights.safetensors is missing"):
        RewardModel.load(corrupt)
    with pytest.raises(ArtifactError, match="manifest.json is missing"):
        RewardModel.load(tmp_path)


def test_bad_training_data_stops_the_job_before_training(tmp_path: Path) -> None:
    bad = write_lines(tmp_path / "bad.jsonl", [GOOD, {**GOOD, "capability": "politeness"}])
    with pytest.raises(DataError, match=f"{bad}:2: unknown capability"):
        train_reward_model(tmp_path / "out", RewardTrainingArgs.quick(), train_path=bad)
    assert not (tmp_path / "out").exists()


# --- real-world transcripts: faults, long dialogues, a time budget ----------------------------


def test_real_transcripts_with_faults_train_within_a_budget_of_seconds(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """One short real run on HH-style transcripts (the stand-in generator's, faults included):
    ``--skip-invalid`` skips exactly the faulty rows and says so, long dialogues are cut and
    counted, and a budget of seconds stops phase 1 with a model that loads and scores."""
    from router_training.reward.standin import StandinSettings, write_standin
    from services.rewards.model import RewardModel

    summary = write_standin(tmp_path / "data", StandinSettings(train_pairs=200, heldout_pairs=60, seed=1))
    hparams = write_lines(tmp_path / "hparams.json", [
        {"verifiable_pairs": False, "max_eval_pairs": 24, "phase1": {"epochs": 5, "learning_rate": 1e-4}}
    ])
    out = tmp_path / "model"
    args = cli(
        "train", "reward", "--data", str(tmp_path / "data" / "train.jsonl"), "--eval-data", str(tmp_path / "data" / "heldout.jsonl"),
        "--skip-invalid", "--max-minutes", "0.2", "--hparams", str(hparams), "--out", str(out),
    )
    assert args.run(args) == 0
    printed = capfd.readouterr()

    metrics = json.loads((out / "metrics.json").read_text())
    for split, name in (("train", "train"), ("eval", "heldout")):
        faults = summary["files"][name]["faults"]
        skipped = metrics["skipped"][split]
        assert skipped["skipped"] == sum(fault["count"] for fault in faults.values()) > 0
        assert skipped["by_reason"] == {
            reason: {"count": fault["count"], "example_lines": sorted(fault["lines"])[:5]}
            for reason, fault in faults.items() if fault["count"]
        }, "exactly the generator's faulty rows, by reason, with their first lines"
    assert "skipped" in printed.out and "e.g. lines" in printed.out
    assert metrics["truncated"]["train"]["prompt_turns_dropped"] > 0, "long dialogues lose their oldest turns"

    assert metrics["stopped_early"] == {"max_minutes": 0.2, "in": "phase1"}
    phase1 = json.loads((out / "manifest.json").read_text())["metrics"]["phase1"]
    assert phase1["stopped_by_deadline"] and 0 < phase1["steps"] < phase1["planned_steps"]
    assert "stopped early" in printed.out
    assert "phase 1: encoder and value head" in printed.err
    assert re.search(r"\[\d\d:\d\d<\d\d:\d\d, +[\d.]+s?/?(step|s)", printed.err), "a bar with elapsed and remaining time"

    assert metrics["capabilities_trained"] == [] and metrics["capabilities_without_data"] == list(DEFAULT_CAPABILITIES)
    model = RewardModel.load(out)
    [score] = model.score(["Human: How do I keep basil alive indoors?"], ["Give it a sunny window and water it when the soil is dry."])
    assert score.capabilities == {} and isinstance(score.reward, float), "no adapters: the aggregator reads the phase-1 state"


def test_more_invalid_rows_than_the_allowed_share_stop_the_job(tmp_path: Path) -> None:
    from router_training.reward.standin import StandinSettings, write_standin

    write_standin(tmp_path / "data", StandinSettings(train_pairs=100, heldout_pairs=20, seed=2))
    strict_share = RewardTrainingArgs.quick().model_copy(update={"skip_invalid": True, "max_skipped_share": 0.01})
    with pytest.raises(DataError, match=r"rows are invalid .* more than the 1% that skipping allows"):
        train_reward_model(tmp_path / "out", strict_share, train_path=tmp_path / "data" / "train.jsonl",
                           eval_path=tmp_path / "data" / "heldout.jsonl")
    assert not (tmp_path / "out").exists()
