"""Export a trained dense embedder to int8 ONNX, beside its weights, for serving on CPU.

torch's exporter writes the transformer's graph; onnxruntime's dynamic quantisation turns the
weights of its matrix multiplications to int8, one scale per output channel (per-tensor scales
lost up to a quarter of the cosine on some prompts; per-channel keeps every prompt above 0.94).
Only ``MatMul`` is quantised: the embedding tables and layer norms stay fp32.

The files land in ``<model_dir>/onnx/``; bundled into a router version, the manifest hashes them
with the rest (see :mod:`services.router.onnx_encoder` for the runtime).
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import warnings
from pathlib import Path

from services.artifacts import artifact_directory, write_json_atomic
from services.custom_code import refuse_custom_code
from services.router.artifact import RouterArtifact
from services.router.onnx_encoder import INPUT_NAMES, ONNX_FOLDER, ONNX_INFO, ONNX_MODEL, OnnxExportInfo, has_onnx_export

logger = logging.getLogger(__name__)

QUANTIZATION = "dynamic int8 (onnxruntime quantize_dynamic, QInt8 per channel, MatMul only)"
OPSET = 17


class NotExportable(ValueError):
    """The model is not the plain transformer → mean pooling → normalise stack the runtime rebuilds."""


def exportable_stack(model: object) -> str | None:
    """Why ``model`` (a SentenceTransformer) cannot be exported, or None when it can."""
    from sentence_transformers.models import Normalize, Pooling, Transformer

    modules = list(model.children())  # type: ignore[attr-defined]
    if len(modules) != 3 or not isinstance(modules[0], Transformer) or type(modules[0]) is not Transformer:
        return "the first module is not a plain Transformer (an MoE embedder runs on torch)"
    pooling, normalize = modules[1], modules[2]
    if not isinstance(pooling, Pooling) or getattr(pooling, "pooling_mode", "mean") != "mean":
        return "pooling is not mean pooling"
    if not isinstance(normalize, Normalize):
        return "the embeddings are not normalised"
    return None


def export_onnx(model_dir: Path) -> OnnxExportInfo:
    """Write ``model_dir/onnx/`` for the sentence-transformers model in ``model_dir``.

    The folder is built beside it and renamed into place (``artifact_directory``), so a failed
    export leaves no partial one that a later load could take for complete.
    """
    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from sentence_transformers import SentenceTransformer

    model_dir = Path(model_dir)
    refuse_custom_code(model_dir)
    model = SentenceTransformer(str(model_dir), device="cpu", local_files_only=True)
    reason = exportable_stack(model)
    if reason is not None:
        raise NotExportable(f"{model_dir}: {reason}")
    transformer = model[0]
    encoder = transformer.auto_model.eval()
    sample = model.tokenizer(["a short text", "and a somewhat longer one to pad"], padding=True, return_tensors="pt")
    inputs = tuple(name for name in INPUT_NAMES if name in sample)

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.encoder = encoder

        def forward(self, *tensors: torch.Tensor) -> torch.Tensor:
            return self.encoder(**dict(zip(inputs, tensors))).last_hidden_state

    info = OnnxExportInfo(
        quantization=QUANTIZATION,
        dimension=int(model.get_embedding_dimension()),
        max_seq_length=int(model.max_seq_length),
        do_lower_case=bool(getattr(transformer, "do_lower_case", False)),
        inputs=inputs,
    )
    target = model_dir / ONNX_FOLDER
    with tempfile.TemporaryDirectory(prefix="onnx-export-") as scratch, artifact_directory(target) as staging:
        full = Path(scratch) / "model_fp32.onnx"
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")  # the tracer's notes on BERT's shape arithmetic, which is static here
            torch.onnx.export(
                LastHiddenState(),
                tuple(sample[name] for name in inputs),
                str(full),
                input_names=list(inputs),
                output_names=["last_hidden_state"],
                dynamic_axes={name: {0: "batch", 1: "tokens"} for name in inputs},
                opset_version=OPSET,
                dynamo=False,
            )
        root = logging.getLogger()
        level = root.level
        root.setLevel(max(level, logging.ERROR))  # the quantiser logs a line per tensor on the root logger
        try:
            quantize_dynamic(
                str(full), str(staging / ONNX_MODEL), weight_type=QuantType.QInt8, per_channel=True, op_types_to_quantize=["MatMul"]
            )
        finally:
            root.setLevel(level)
        write_json_atomic(staging / ONNX_INFO, info.model_dump(mode="json"))
    logger.info("exported %s to int8 ONNX in %s", model_dir, target)
    return info


def export_if_possible(model_dir: Path) -> bool:
    """Export ``model_dir``; False (with the reason logged) for a model the runtime cannot rebuild."""
    try:
        export_onnx(model_dir)
    except NotExportable as exc:
        logger.info("no ONNX export, the embedder runs on torch: %s", exc)
        return False
    return True


def add_onnx_export(store: Path, artifact: RouterArtifact, key: bytes | None = None) -> RouterArtifact | None:
    """A new version of ``artifact`` whose bundled embedder carries an export (the head, scores and
    thresholds unchanged), for a version trained before exports existed; None when it has no
    bundled embedder, has one already or its embedder cannot be exported. Signed with ``key``
    (the artifact signing key) when given, like every published version."""
    from services.router.artifact import write_router_artifact

    bundled = artifact.bundled_embedder
    if bundled is None or has_onnx_export(bundled):
        return None
    with tempfile.TemporaryDirectory(prefix="router-embedder-") as scratch:
        copy = Path(scratch) / "embedder"
        shutil.copytree(bundled, copy)
        if not export_if_possible(copy):
            return None
        manifest = artifact.manifest.model_copy(
            update={"parent": artifact.version, "training": {**artifact.manifest.training, "onnx_export": True}}
        )
        return write_router_artifact(
            store, manifest, artifact.weight, artifact.bias, embedder_dir=copy, ood=artifact.ood, key=key
        )
