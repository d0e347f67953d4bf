"""Config validation: mistakes are caught at load time with messages that name the field."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from services.config import ConfigError, load_config, parse_config
from services.experts.config import GGUFExpert, LoRAExpert
from tests.conftest import config_from, default_config_dict


def test_default_config_loads_three_experts_with_absolute_adapter_paths() -> None:
    config = load_config()
    assert [expert.name for expert in config.experts] == ["smollm2", "smollm2-math", "smollm2-code"]
    assert isinstance(config.expert("smollm2"), GGUFExpert)
    for name in ("smollm2-math", "smollm2-code"):
        adapter = config.expert(name)
        assert isinstance(adapter, LoRAExpert) and Path(adapter.path).is_absolute()
        assert Path(adapter.path).parent.name == "adapters"


def test_aliases_resolve_to_lora_experts() -> None:
    config = config_from(default_config_dict())
    assert config.model_aliases() == {"smollm2:math": "smollm2-math", "smollm2:code": "smollm2-code"}
    assert config.find_expert("smollm2:math").name == "smollm2-math"
    assert config.find_expert("smollm2:nope") is None


def test_relative_paths_resolve_against_the_config_file(tmp_path: Path) -> None:
    import yaml

    raw = copy.deepcopy(default_config_dict())
    raw["experts"][1]["path"] = "my-adapters/math"
    raw["router"]["store"] = "routers"
    path = tmp_path / "config.yaml"
    path.write_text(yaml.safe_dump(raw))
    config = load_config(path)
    assert config.expert("smollm2-math").path == str(tmp_path / "my-adapters" / "math")
    assert config.router.store == str(tmp_path / "routers")


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda raw: raw["experts"].append(dict(raw["experts"][0])), "names must be unique"),
        (lambda raw: raw.__setitem__("default_expert", "gpt-9"), "default_expert 'gpt-9' is not one of"),
        (lambda raw: raw["experts"][1].__setitem__("base", "missing"), "base 'missing' must name an hf, gguf or llamacpp"),
        (lambda raw: raw["experts"][0].__setitem__("name", "auto"), "may not be 'auto'"),
        (lambda raw: raw["experts"][0].__setitem__("kind", "onnx"), "kind"),
        (lambda raw: raw["experts"][0].__setitem__("colour", "blue"), "colour"),
        (lambda raw: raw["experts"][0]["generation"].__setitem__("temperature", 3), "temperature"),
        (
            lambda raw: raw["experts"].append(
                {"name": "remote", "kind": "openai", "base_url": "http://x/v1", "cost": 1, "api_key_env": "sk-abc123"}
            ),
            "must be an environment variable name",
        ),
        (
            lambda raw: raw["experts"].append({"name": "remote", "kind": "openai", "base_url": "http://x/v1"}),
            "set `cost`",
        ),
        (lambda raw: raw["ingress"].__setitem__("max_concurrent_requests", 500), "must be below"),
        (lambda raw: raw["router"]["initial_scores"]["math"].__setitem__("gpt-9", 1.0), "names unknown experts: \\['gpt-9'\\]"),
        (lambda raw: raw["router"]["initial_scores"].__setitem__("poetry", {}), "categories not in the taxonomy"),
        (lambda raw: raw["router"].__setitem__("general_expert", "gpt-9"), "general_expert 'gpt-9'"),
        (lambda raw: raw["router"].__setitem__("categories", ["Math", "code"]), "lowercase identifiers"),
    ],
)
def test_invalid_configs_are_rejected_with_the_field_named(change, message: str) -> None:
    raw = copy.deepcopy(default_config_dict())
    change(raw)
    with pytest.raises(ConfigError, match=message):
        parse_config(raw, folder=Path("."), source="test")


def test_missing_config_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="config file not found: .*nothing.yaml"):
        load_config(tmp_path / "nothing.yaml")


def test_deployment_names_follow_the_base() -> None:
    config = config_from(default_config_dict())
    assert config.deployment_name_for("smollm2") == "expert-smollm2"
    assert config.deployment_name_for("smollm2-code") == "expert-smollm2"
