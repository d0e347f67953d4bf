"""Sentence embeddings from an int8 ONNX export of the router's embedder, on onnxruntime.

On two CPU cores the embedding pass is most of a route decision. The export
(``router_training/embedder/onnx_export.py``) is the same transformer with its matrix
multiplications quantised to int8, per output channel; pooling and normalisation happen here,
as sentence-transformers does them. Measured on the test split with the trained router: one
prompt in 3.5 ms against 11.4 ms with torch fp32, the same expert for 100% of prompts and the
same category for 98.5%, accuracy +0.2 points.

The export lives in the bundled embedder's ``onnx/`` folder, so the router artifact's manifest
hashes it with everything else: a corrupted export is refused when the version loads.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from services.custom_code import refuse_custom_code

ONNX_FOLDER = "onnx"
ONNX_MODEL = "model_qint8.onnx"
ONNX_INFO = "export.json"
INPUT_NAMES = ("input_ids", "attention_mask", "token_type_ids")


class OnnxExportInfo(BaseModel):
    """What the runtime needs besides the graph: how texts were tokenised and pooled."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    quantization: str = Field(description="How the weights were quantised.")
    dimension: int = Field(gt=0)
    max_seq_length: int = Field(gt=0, description="Tokens kept per text, as in the torch model.")
    do_lower_case: bool = False
    inputs: tuple[str, ...] = Field(description="Graph inputs, in the tokenizer's names.")


def has_onnx_export(model_dir: Path) -> bool:
    return (Path(model_dir) / ONNX_FOLDER / ONNX_INFO).is_file()


def read_export_info(model_dir: Path) -> OnnxExportInfo:
    return OnnxExportInfo.model_validate_json((Path(model_dir) / ONNX_FOLDER / ONNX_INFO).read_text(encoding="utf-8"))


class OnnxSentenceEncoder:
    """Mean-pooled, L2-normalised embeddings, as the torch model gives them, within int8 error.

    onnxruntime releases the GIL while it runs, so a pass in a worker thread leaves the
    replica's event loop free to collect the next batch.
    """

    def __init__(self, model_dir: Path, threads: int | None = None) -> None:
        import onnxruntime
        from transformers import AutoTokenizer

        model_dir = Path(model_dir)
        refuse_custom_code(model_dir)  # the tokenizer is read from it with transformers
        self.info = read_export_info(model_dir)
        options = onnxruntime.SessionOptions()
        # onnxruntime's default is the physical core count, which can be half of a VM's vCPUs.
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.graph_optimization_level = onnxruntime.GraphOptimizationLevel.ORT_ENABLE_ALL
        # Idle worker threads would spin for the next run, taking the cores the rest of the
        # decision (numpy), the replica's event loop and the other replicas need.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self._session = onnxruntime.InferenceSession(
            str(model_dir / ONNX_FOLDER / ONNX_MODEL), options, providers=["CPUExecutionProvider"]
        )
        self.tokenizer = AutoTokenizer.from_pretrained(str(model_dir), local_files_only=True)
        self.dimension = self.info.dimension
        self.max_seq_length = self.info.max_seq_length

    def _texts(self, texts: list[str]) -> list[str]:
        cleaned = [text.strip() for text in texts]  # as sentence-transformers tokenises
        return [text.lower() for text in cleaned] if self.info.do_lower_case else cleaned

    def encode_one(self, text: str) -> np.ndarray:
        """One graph run over one text, with no padding."""
        tokens = self.tokenizer(
            self._texts([text]), truncation="longest_first", max_length=self.max_seq_length, return_tensors="np"
        )
        feeds = {name: tokens[name].astype(np.int64) for name in self.info.inputs}
        pooled = self._session.run(None, feeds)[0].mean(axis=1)  # no padding: every token counts
        return (pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)).astype(np.float32)[0]

    def encode(self, texts: list[str], show_progress: bool = False) -> np.ndarray:
        """Each text in a run of its own. Dynamic quantisation scales the activations by the whole
        input tensor, so a text batched with others (and their padding) would get another
        embedding, and sometimes another route, than alone; on CPU batching gained little anyway
        (1,000 prompts: 4.6 s in batches of 8, about the same one by one)."""
        from tqdm.auto import tqdm

        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for index, text in enumerate(tqdm(texts, desc="Embedding", disable=not show_progress)):
            out[index] = self.encode_one(text)
        return out
