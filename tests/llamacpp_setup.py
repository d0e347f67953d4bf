"""The default experts on llama.cpp, for the tests: the config, and adapters exported to GGUF in a
folder of the test's own (the exports never land beside the project's adapters)."""

from __future__ import annotations

import copy
import shutil
from pathlib import Path
from typing import Any

from services.config import DEFAULT_CONFIG_PATH


def llamacpp_config_dict(default_config: dict[str, Any], folder: Path, *, n_ctx: int = 16384, max_batch_size: int = 8) -> dict[str, Any]:
    """The default config with its base expert on llama.cpp (each request with ``n_ctx /
    max_batch_size`` cells: 2,048 by default) and its adapters copied to ``folder`` and exported
    to GGUF there."""
    from services.experts.gguf_adapter import export_gguf_adapter
    from services.experts.loading import locate_weights
    from tests.conftest import config_from

    raw = copy.deepcopy(default_config)
    experts = []
    for expert in raw["experts"]:
        expert = dict(expert)
        if expert["kind"] == "gguf":
            expert["kind"] = "llamacpp"
            expert["llamacpp"] = {"n_ctx": n_ctx}
            expert["batching"] = {**expert.get("batching", {}), "max_batch_size": max_batch_size}
        elif expert["kind"] == "lora":
            source = (DEFAULT_CONFIG_PATH.parent / expert["path"]).resolve()
            target = folder / expert["name"]
            if not target.exists():
                shutil.copytree(source, target)
            expert["path"] = str(target)
        experts.append(expert)
    raw["experts"] = experts
    config = config_from(raw)
    for expert in config.experts:
        if expert.kind == "lora" and not (Path(expert.path) / "gguf").exists():
            export_gguf_adapter(Path(expert.path), locate_weights(config.expert(expert.base)).weights_path)
    return raw
