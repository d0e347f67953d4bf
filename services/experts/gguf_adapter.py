"""PEFT LoRA adapters as GGUF LoRA adapters, the form llama.cpp loads.

The export lives beside the adapter, in ``<adapter>/gguf/``: ``adapter.gguf`` and a manifest
holding its sha256 and that of the ``adapter_model.safetensors`` it was made from, so a
retrained adapter is never served through a stale export.

The tensors keep their values (float32); only names and one layout change:
``model.layers.N.self_attn.q_proj`` becomes ``blk.N.attn_q.weight`` (gguf's own name map for the
base's architecture), and because llama.cpp's GGUF stores the query and key projections with
their rows permuted for its rotary embedding, the LoRA ``B`` matrices of those two are permuted
the same way (``A`` acts on the input side, which is not permuted).
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any

import numpy as np

from services.artifacts import ArtifactError, ArtifactManifest, file_sha256, verify_artifact, write_manifest
from services.errors import ModelFilesMissingError

EXPORT_FOLDER = "gguf"
EXPORT_FILE = "adapter.gguf"
EXPORT_KIND = "gguf-lora-adapter"
SOURCE_FILE = "adapter_model.safetensors"
PEFT_MODULE = re.compile(r"^base_model\.model\.(?P<module>.+)\.lora_(?P<side>[AB])\.weight$")


def export_folder(adapter_dir: Path) -> Path:
    return adapter_dir / EXPORT_FOLDER


def permute_rotary_rows(weights: np.ndarray, heads: int) -> np.ndarray:
    """The row order llama.cpp's GGUF gives a query or key projection with ``heads`` heads."""
    return weights.reshape(heads, 2, weights.shape[0] // heads // 2, *weights.shape[1:]).swapaxes(1, 2).reshape(weights.shape)


def _base_metadata(base_gguf: Path) -> dict[str, Any]:
    import gguf

    reader = gguf.GGUFReader(str(base_gguf))
    architecture = str(reader.fields["general.architecture"].contents())
    return {
        "architecture": architecture,
        "blocks": int(reader.fields[f"{architecture}.block_count"].contents()),
        "heads": int(reader.fields[f"{architecture}.attention.head_count"].contents()),
        "kv_heads": int(reader.fields[f"{architecture}.attention.head_count_kv"].contents()),
    }


def export_gguf_adapter(adapter_dir: Path, base_gguf: Path) -> Path:
    """Write ``<adapter>/gguf/`` for the base model in ``base_gguf``; returns the GGUF file."""
    import json

    import gguf
    from safetensors.numpy import load_file

    config = json.loads((adapter_dir / "adapter_config.json").read_text(encoding="utf-8"))
    if config.get("peft_type") != "LORA" or config.get("use_rslora") or config.get("use_dora"):
        raise ArtifactError(f"{adapter_dir}: only plain LoRA adapters export to GGUF (not rsLoRA or DoRA)")
    base = _base_metadata(base_gguf)
    architecture = next(arch for arch, name in gguf.MODEL_ARCH_NAMES.items() if name == base["architecture"])
    names = gguf.get_tensor_name_map(architecture, base["blocks"])
    rotary_heads = {"q_proj": base["heads"], "k_proj": base["kv_heads"]}
    folder = export_folder(adapter_dir)
    folder.mkdir(exist_ok=True)
    temporary = folder / f".{EXPORT_FILE}.{os.getpid()}.tmp"
    writer = gguf.GGUFWriter(str(temporary), base["architecture"])
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(config["lora_alpha"]))
    for key, weights in sorted(load_file(str(adapter_dir / SOURCE_FILE)).items()):
        match = PEFT_MODULE.match(key)
        target = names.get_name(match["module"]) if match else None
        if target is None:
            raise ArtifactError(f"{adapter_dir / SOURCE_FILE}: tensor {key!r} has no {base['architecture']} GGUF name")
        weights = weights.astype(np.float32)
        projection = match["module"].rsplit(".", 1)[-1]
        if match["side"] == "B" and projection in rotary_heads:
            weights = permute_rotary_rows(weights, rotary_heads[projection])
        writer.add_tensor(f"{target}.weight.lora_{match['side'].lower()}", np.ascontiguousarray(weights))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    target_file = folder / EXPORT_FILE
    os.replace(temporary, target_file)
    source_sha256 = file_sha256(adapter_dir / SOURCE_FILE)
    write_manifest(folder, ArtifactManifest(
        kind=EXPORT_KIND, name=adapter_dir.name, version=source_sha256[:16], base=base_gguf.name,
        files={EXPORT_FILE: file_sha256(target_file)}, data={"source": {SOURCE_FILE: source_sha256}},
    ))
    return target_file


def export_problem(adapter_dir: Path) -> str | None:
    """Why the adapter's GGUF export cannot be used (missing, altered, or made from other
    weights than the adapter's current ones); None when it can."""
    folder = export_folder(adapter_dir)
    if not (folder / EXPORT_FILE).is_file():
        return f"{adapter_dir} has no GGUF export"
    try:
        manifest = verify_artifact(folder, None)
    except ArtifactError as exc:
        return f"the GGUF export in {folder} does not verify ({exc})"
    if manifest.kind != EXPORT_KIND or manifest.data.get("source", {}).get(SOURCE_FILE) != file_sha256(adapter_dir / SOURCE_FILE):
        return f"the GGUF export in {folder} was made from other weights than {adapter_dir / SOURCE_FILE}"
    return None


def verified_gguf_adapter(adapter_dir: Path) -> Path:
    """The adapter's GGUF file, once its manifest verifies and matches the adapter's weights."""
    problem = export_problem(adapter_dir)
    if problem is not None:
        raise ModelFilesMissingError(f"{problem}; make it with `coe adapters export-gguf`")
    return export_folder(adapter_dir) / EXPORT_FILE
