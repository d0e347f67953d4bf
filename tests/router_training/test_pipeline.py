"""``coe train all`` end to end on a small slice of the seed data: real models, few steps.

One run trains both embedders and the heads, and runs the mapping (every expert really
generates) with the session's reward model, given with ``--reward-model`` (training one is
``coe train reward``'s test); the published version is then loaded the way the serving router
loads it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from deployments.cli.main import main
from services.config import load_config
from tests.conftest import default_config_dict
from tests.training_runs import PipelineInputs, write_pipeline_inputs

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def pipeline_inputs(tmp_path_factory: pytest.TempPathFactory) -> PipelineInputs:
    return write_pipeline_inputs(tmp_path_factory.mktemp("pipeline"), default_config_dict())


@pytest.fixture(scope="module")
def small_data(pipeline_inputs: PipelineInputs) -> Path:
    return pipeline_inputs.data


@pytest.fixture(scope="module")
def config_file(pipeline_inputs: PipelineInputs) -> Path:
    return pipeline_inputs.config


@pytest.fixture(scope="module")
def pipeline_run(pipeline_inputs: PipelineInputs, reward_model_dir: Path) -> Path:
    """``coe train all --quick --ray off`` on the slice, as a user runs it, with the session's
    reward model (``--reward-model``) rather than a second one trained here."""
    inputs = pipeline_inputs
    argv = ["train", "all", "--quick", "--ray", "off", "--data", str(inputs.data), "--out", str(inputs.out), "--config", str(inputs.config),
            "--reward-model", str(reward_model_dir)]
    assert main(argv) == 0
    return inputs.out


def test_report_has_metrics_and_four_charts(pipeline_run: Path) -> None:
    for chart in ("confusion.png", "reward_accuracy.png", "mapping_scores.png", "quality_vs_cost.png"):
        assert (pipeline_run / chart).read_bytes().startswith(PNG_MAGIC), chart
    metrics = json.loads((pipeline_run / "metrics.json").read_text(encoding="utf-8"))
    assert set(metrics["stage_seconds"]) == {"data", "embedders", "classifier", "reward", "mapping", "report"}
    rows = metrics["ablation"]["rows"]
    assert [row["variant"] for row in rows] == ["frozen", "dense", "moe", "moe-gate"]
    servable = [row for row in rows if row["servable"]]
    best = max(row["calibration_accuracy"] for row in servable)
    [chosen] = [row for row in rows if row["chosen"]]
    assert chosen["servable"] and chosen["calibration_accuracy"] == best
    assert metrics["ablation"]["chosen"] == chosen["variant"]
    assert 0.0 <= metrics["reward"]["pairwise_accuracy"] <= 1.0
    evidence = metrics["mapping"]["evidence"]
    assert {category for category, item in evidence.items() if item["source"] == "check"} == {"math", "coding", "extraction"}
    for item in evidence.values():
        for interval in item["score"].values():
            assert 0.0 <= interval["low"] <= interval["mean"] <= interval["high"] <= 1.0
    assert set(metrics["mapping"]["reward_agreement"]) <= {"math", "coding", "extraction"}
    evaluation = metrics["evaluation"]  # the published router, through the serving code
    assert evaluation["test"]["prompts"] == 27 and evaluation["external"]["prompts"] == 27, "3 per category and out_of_scope"
    assert 0.0 <= evaluation["external"]["expert_choice"] <= 1.0 and "gap" in evaluation
    assert metrics["out_of_distribution"]["neighbours"] in (1, 3, 5, 10)

    def refuse(constant: str) -> None:
        raise AssertionError(f"metrics.json holds {constant}, which is not JSON")

    json.loads((pipeline_run / "metrics.json").read_text(encoding="utf-8"), parse_constant=refuse)
    check = metrics["end_to_end"]
    assert check["prompts"] == 6 and check["current"] is None, "two held-out tasks per checked category; no router was current"
    assert metrics["activation"]["made_current"]
    budgets = metrics["quality_vs_cost"]["budget"]
    assert len(budgets) == 3, "from the general expert alone to every expert"
    assert [point["budget"] for point in budgets] == sorted(point["budget"] for point in budgets)


def test_published_router_is_current_and_routes_in_the_serving_code(pipeline_run: Path, config_file: Path) -> None:
    from services.router.loader import RouterFactory
    from services.router.store import RouterStore

    config = load_config(str(config_file))
    assert config.router is not None
    metrics = json.loads((pipeline_run / "metrics.json").read_text(encoding="utf-8"))
    artifact = RouterStore(Path(config.router.store)).load_current()
    assert artifact.version == metrics["router_version"]
    assert artifact.manifest.scores == metrics["mapping"]["scores"], "the table the mapping measured is the one served"
    assert set(artifact.manifest.scores) == set(config.router.categories)
    chosen = metrics["ablation"]["chosen"]
    assert (artifact.bundled_embedder is None) == (chosen == "frozen")
    router = RouterFactory(config).build(artifact)
    # A fine-tuned dense winner is served from its int8 export, as `coe train router`'s is.
    assert router.embedder.backend == ("onnx" if chosen == "dense" else "torch")
    [decision] = router.decide([router.prepare([{"role": "user", "content": "Solve 12 * 7 and explain the steps."}])])
    assert decision.category in config.router.categories
    assert decision.expert in {expert.name for expert in config.experts}


def test_a_given_reward_model_is_used_and_none_is_trained(pipeline_run: Path, config_file: Path, reward_model_dir: Path) -> None:
    from services.rewards.model import RewardModel, read_metrics

    config = load_config(str(config_file))
    metrics = json.loads((pipeline_run / "metrics.json").read_text(encoding="utf-8"))
    given = RewardModel.load(reward_model_dir)
    assert metrics["reward"]["reused"] == {"path": str(reward_model_dir.resolve()), "version": given.version}
    assert metrics["reward"]["pairwise_accuracy"] == read_metrics(reward_model_dir)["pairwise_accuracy"], "its own held-out figures"
    assert metrics["stage_seconds"]["reward"] < 30, "loaded, not trained"
    assert not Path(config.training.reward_model).exists(), "nothing was written where a trained one would go"
    from services.router.store import RouterStore

    assert config.router is not None
    served = RouterStore(Path(config.router.store)).load_current()
    assert served.manifest.metrics["mapping"]["reward_model"] == given.version, "the mapping judged answers with it"


def test_reward_model_options_exclude_each_other(pipeline_inputs: PipelineInputs, reward_model_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    inputs = pipeline_inputs
    argv = ["train", "all", "--quick", "--data", str(inputs.data), "--out", str(tmp_path / "out"), "--config", str(inputs.config),
            "--reward-model", str(reward_model_dir), "--reward-out", str(tmp_path / "reward")]
    assert main(argv) == 2
    assert "not both" in capsys.readouterr().err
    assert not (tmp_path / "out").exists()


def test_bad_data_names_file_and_line_and_changes_nothing(
    small_data: Path, config_file: Path, pipeline_run: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from services.router.store import RouterStore

    config = load_config(str(config_file))
    assert config.router is not None
    before = RouterStore(Path(config.router.store)).current_version()
    bad = tmp_path / "data"
    shutil.copytree(small_data, bad)
    train = bad / "router" / "train.jsonl"
    lines = train.read_text(encoding="utf-8").splitlines()
    lines[4] = json.dumps({**json.loads(lines[4]), "category": "cooking"})
    train.write_text("\n".join(lines) + "\n", encoding="utf-8")
    out = tmp_path / "report"
    argv = ["train", "all", "--quick", "--ray", "off", "--data", str(bad), "--out", str(out), "--config", str(config_file)]
    assert main(argv) == 2
    assert f"{train}:5: category 'cooking' is neither in the taxonomy" in capsys.readouterr().err
    assert not out.exists(), "no half-written report"
    assert RouterStore(Path(config.router.store)).current_version() == before


def test_data_folder_must_hold_both_datasets(tmp_path: Path, config_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "router").mkdir()
    argv = ["train", "all", "--quick", "--data", str(tmp_path), "--out", str(tmp_path / "out"), "--config", str(config_file)]
    assert main(argv) == 2
    error = capsys.readouterr().err
    assert "missing:" in error and str(tmp_path / "reward" / "train.jsonl") in error
    assert not (tmp_path / "out").exists()
