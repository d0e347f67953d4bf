"""The trained router in-process: real embedder, real artifact, real seed data."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from deployments.cli.main import main
from services.errors import InvalidRequestError
from services.router.decision import RoutingKnobs


def decide(router: Any, text: str | None = None, messages: list[dict[str, str]] | None = None, **knobs: Any):
    messages = messages or [{"role": "user", "content": text}]
    return router.decide([router.prepare(messages, RoutingKnobs(**knobs))])[0]


def test_math_and_coding_prompts_reach_their_adapters(static_router: Any) -> None:
    math = decide(static_router, "Solve the equation 3x + 7 = 25 and show the steps.")
    coding = decide(static_router, "Write a Python function that removes duplicates from a list while keeping order.")
    assert (math.category, math.expert, math.policy) == ("math", "smollm2-math", "static")
    assert (coding.category, coding.expert) == ("coding", "smollm2-code")
    assert math.router_version == static_router.version and not math.uncertain
    assert abs(sum(math.probabilities.values()) - 1) < 1e-4
    assert [item.expert for item in math.ranked][0] == "smollm2-math"


def test_a_follow_up_keeps_the_conversations_category(static_router: Any) -> None:
    conversation = [
        {"role": "user", "content": "Write a short poem about the first snow of winter."},
        {"role": "assistant", "content": "Soft white hush on sleeping streets..."},
        {"role": "user", "content": "now make it shorter"},
    ]
    assert decide(static_router, messages=conversation).category == "writing"


def test_low_confidence_falls_back_to_the_general_expert(static_router: Any) -> None:
    forced = decide(static_router, "Solve 2x = 10.", confidence_threshold=0.999)
    assert forced.uncertain and forced.expert == "smollm2" and "below τ=0.999" in forced.reason
    assert "general expert" in forced.reason


@pytest.mark.parametrize("text", ["ok", "thanks!", "hello", "lol", "Can you help me with this?", "good morning :)"])
def test_chit_chat_is_out_of_distribution_and_goes_to_the_general_expert(static_router: Any, text: str) -> None:
    """Without the check, "ok" went to roleplay at about 0.9 confidence."""
    decision = decide(static_router, text)
    threshold = static_router.artifact.manifest.ood.threshold
    assert decision.uncertain and decision.reason == "out_of_distribution" and decision.expert == "smollm2"
    assert decision.ood_score is not None and decision.ood_score > threshold


@pytest.mark.parametrize(
    "text",
    [
        "def digit_sum(n: int) -> int:\n    \"\"\"Sum of the decimal digits of n.\n    >>> digit_sum(1234)\n    10\n    \"\"\"",
        "A baker sells 36 rolls in the morning and twice as many in the afternoon at $0.75 each. How much does she take in?",
        "From this email, pull out the meeting date and the attendees as JSON: 'Hi all, we meet on 4 March with Ana and Li.'",
    ],
)
def test_real_requests_are_in_distribution(static_router: Any, text: str) -> None:
    decision = decide(static_router, text)
    assert decision.reason != "out_of_distribution"
    assert decision.ood_score is not None and decision.ood_score <= static_router.artifact.manifest.ood.threshold


def test_a_router_version_from_before_the_check_still_loads_and_routes(app_config: Any, tmp_path: Path) -> None:
    """A version written by the previous release (no ``ood`` in its manifest, no banks) keeps its
    content version, loads, and decides by confidence alone."""
    import shutil

    from services.router.loader import RouterFactory
    from services.router.store import RouterStore

    folder = Path(__file__).parents[2] / "fixtures" / "router_store_v1" / "e309203723d69675"
    assert "ood" not in json.loads((folder / "manifest.json").read_text())
    store = RouterStore(tmp_path)
    shutil.copytree(folder, store.folder(folder.name))
    store.use(folder.name)
    artifact = store.load_current()
    assert artifact.version == folder.name and artifact.ood is None
    decision = decide(RouterFactory(app_config).build(artifact), "Solve 2x = 10.")
    assert decision.router_version == folder.name and decision.ood_score is None
    assert decision.reason != "out_of_distribution"


def test_long_input_is_truncated_and_says_so(static_router: Any) -> None:
    decision = decide(static_router, "Please proofread this essay. " + "The committee met again. " * 200)
    assert decision.truncated


def test_empty_input_is_refused(static_router: Any) -> None:
    with pytest.raises(InvalidRequestError, match="nothing to route on"):
        decide(static_router, "   ")


def test_test_split_accuracy_is_recorded(trained_router: Any) -> None:
    test = trained_router.manifest.metrics["test"]
    assert test["accuracy"] > 0.7
    assert set(test["per_category"]) == set(trained_router.manifest.taxonomy)
    assert trained_router.manifest.metrics["calibration_ece_after"] <= trained_router.manifest.metrics["calibration_ece_before"] + 0.02


def test_cli_routes_a_jsonl_file_in_order_with_fields_passed_through(tmp_path: Path, tmp_config_file, trained_router: Any) -> None:
    import copy

    from tests.conftest import default_config_dict

    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(trained_router.folder.parent)
    source = tmp_path / "in.jsonl"
    lines = [
        {"id": 1, "text": "Integrate x^2 from 0 to 3."},
        {"id": 2, "messages": [{"role": "user", "content": "Fix this: for i in range(10) print(i)"}]},
        {"id": 3, "text": "  "},
        {"id": 4, "text": "Who was the first emperor of Rome?", "extra": {"kept": True}},
    ]
    source.write_text("\n".join(json.dumps(line) for line in lines) + "\n")
    out = tmp_path / "out.jsonl"
    assert main(["route", "--config", str(tmp_config_file(raw)), "--jsonl", str(source), "--out", str(out)]) == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [row["id"] for row in rows] == [1, 2, 3, 4]
    assert rows[0]["category"] == "math" and rows[0]["expert"] == "smollm2-math"
    assert rows[1]["category"] == "coding" and rows[1]["messages"] == lines[1]["messages"]
    assert rows[2]["category"] is None and "'text' is empty" in rows[2]["error"]
    assert rows[3]["extra"] == {"kept": True} and rows[3]["router_version"] == trained_router.version
    for row in (rows[0], rows[1], rows[3]):
        assert set(row) >= {"category", "probabilities", "expert", "confidence", "uncertain", "router_version"}


def test_calibrate_finds_the_cost_weight_for_a_target_share(
    tmp_path: Path, tmp_config_file, trained_router: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    """With the code adapter made expensive, λ trades it for the base model on coding prompts."""
    import copy

    from tests.conftest import default_config_dict

    raw = copy.deepcopy(default_config_dict())
    raw["router"]["store"] = str(trained_router.folder.parent)
    raw["experts"][2]["cost"] = 1.0  # smollm2-code; the others cost 0.1345 (read from the weights)
    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text(
        "\n".join(
            json.dumps({"text": text})
            for text in (
                "Write a Python function that reverses a linked list.",
                "Fix this bug: TypeError: 'NoneType' object is not subscriptable in my parser.",
                "SQL query for the ten most recent orders per customer",
                "What is 15% of 240?",
            )
        )
    )

    def calibrate(share: str) -> str:
        argv = ["calibrate", "--config", str(tmp_config_file(raw)), "--jsonl", str(prompts), "--expert", "smollm2-code", "--share", share]
        assert main(argv) == 0
        return capsys.readouterr().out

    import re

    def parsed(output: str) -> tuple[float, float]:
        match = re.search(r"= ([0-9.e+-]+) sends ([0-9.]+)% of 4 prompts", output)
        assert match, output
        return float(match.group(1)), float(match.group(2))

    weight, most = parsed(calibrate("1.0"))
    assert weight == 0 and most >= 50.0  # free choice: the coding prompts go to the code adapter
    weight, share = parsed(calibrate("0.0"))
    assert weight > 0 and share == 0.0  # a large enough λ makes the expensive adapter lose


def test_a_version_can_bundle_its_own_embedder(tmp_path: Path, app_config: Any, trained_router: Any) -> None:
    """A router trained on a fine-tuned embedder carries it; serving loads it from the version,
    and a version derived from it (a new score table) carries the embedder and the banks over."""
    from services.artifacts import ArtifactError
    from services.router.artifact import derive_router_artifact, load_router_artifact
    from services.router.loader import RouterFactory

    assert trained_router.manifest.embedder == "artifact:embedder"  # the suite's router is fine-tuned, as make run's is
    bundled = derive_router_artifact(tmp_path, trained_router, parent=trained_router.version)
    assert bundled.bundled_embedder.is_dir() and bundled.ood is not None and bundled.version == trained_router.version
    assert "embedder/model.safetensors" in bundled.manifest.files
    router = RouterFactory(app_config).build(bundled)
    assert decide(router, "Solve the equation 3x + 7 = 25 and show the steps.").expert == "smollm2-math"
    weights = bundled.folder / "embedder" / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[5000] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(ArtifactError, match="corrupt: embedder/model.safetensors"):
        load_router_artifact(bundled.folder)


def test_decisions_from_one_embedding_pass_match_deciding_afresh(static_router: Any) -> None:
    """A sweep over the knobs (the training report's) embeds once and decides per setting."""
    messages = [[{"role": "user", "content": text}] for text in (
        "Solve the equation 3x + 7 = 25 and show the steps.", "Write a haiku about the sea.", "Hmm.")]
    embedded = static_router.embed([static_router.prepare(m) for m in messages])
    for knobs in (RoutingKnobs(), RoutingKnobs(cost_weight=5.0), RoutingKnobs(confidence_threshold=0.99)):
        queries = [static_router.prepare(m, knobs) for m in messages]
        assert static_router.decide_embedded(queries, embedded) == static_router.decide(queries)
    with pytest.raises(ValueError, match="3 embedded texts"):
        static_router.decide_embedded(queries[:2], embedded)


def test_a_version_scoring_none_of_the_configured_experts_sends_everything_to_the_general_expert(trained_router: Any) -> None:
    """A router trained for other experts (the config renamed its base model since) still answers:
    every request goes to the general expert, and the decision says why."""
    from services.router.loader import RouterFactory
    from tests.conftest import config_from, default_config_dict

    raw = default_config_dict()
    house_model = {**next(expert for expert in raw["experts"] if expert["name"] == "smollm2"), "name": "house-model"}
    raw["experts"] = [house_model]
    raw["router"]["general_expert"] = raw["default_expert"] = "house-model"
    raw["router"].pop("initial_scores", None)  # the seed scores name the experts this config no longer has
    raw["router"]["store"] = str(trained_router.folder.parent)
    router = RouterFactory(config_from(raw)).build(trained_router)
    decision = decide(router, "Solve 3x + 4 = 19 for x.")
    assert decision.expert == "house-model" and decision.uncertain
    assert decision.reason == f"no configured expert has a score for {decision.category}: the general expert answers"
    assert router.expert_for("math") == "house-model"
