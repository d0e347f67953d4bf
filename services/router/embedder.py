"""The sentence embedder behind stage 1, loaded offline from a package or a directory.

A directory whose configs name custom code (``auto_map``) is refused where it is located, so
training (which locates its base model here too) and serving alike never load one.
"""

from __future__ import annotations

import importlib.util
import logging
from pathlib import Path
from typing import Any

import numpy as np

from services.custom_code import refuse_custom_code
from services.errors import ModelFilesMissingError
from services.experts.loading import force_offline
from services.router.config import EmbedderSource, EmbeddingBackend
from services.router.onnx_encoder import OnnxSentenceEncoder, has_onnx_export

logger = logging.getLogger(__name__)


def locate_embedder(source: EmbedderSource) -> Path:
    """Directory of the sentence-transformers model, or an error naming how to install it.

    Raises :class:`~services.custom_code.CustomCodeError` for a directory that names custom code.
    """
    if source.path is not None:
        folder = Path(source.path)
        if not (folder / "modules.json").is_file():
            raise ModelFilesMissingError(f"router embedder: no sentence-transformers model at {folder}")
        refuse_custom_code(folder)
        return folder
    spec = importlib.util.find_spec(source.package)
    if spec is None or not spec.submodule_search_locations:
        raise ModelFilesMissingError(
            f"router embedder: package '{source.package}' is not installed; install it with: {source.install_hint}"
        )
    folder = Path(list(spec.submodule_search_locations)[0]) / source.subdir
    if not (folder / "modules.json").is_file():
        raise ModelFilesMissingError(f"router embedder: {folder} holds no sentence-transformers model")
    refuse_custom_code(folder)
    return folder


class Embedder:
    """Unit-length sentence embeddings, plus whether each text exceeded the model's window.

    sentence-transformers sorts a call's texts by length before cutting them into chunks of
    ``batch_size``; small chunks keep short prompts from being padded to the longest one, which
    on CPU costs more than the batching saves (measured: 8 beats 32 by 2.7× on mixed prompts).

    With ``backend="onnx"`` and an int8 export beside the weights (a router version's bundled
    embedder has one), the export computes the embeddings and the torch model is not loaded; a model
    without one (the packaged MiniLM, an MoE embedder) runs on torch.
    """

    def __init__(
        self,
        source: EmbedderSource,
        batch_size: int = 8,
        reference: str | None = None,
        backend: EmbeddingBackend = "torch",
        threads: int | None = None,
    ) -> None:
        force_offline()
        from services.router.moe_embedder import is_moe_embedder, load_moe_embedder

        self.reference = reference or source.reference
        folder = locate_embedder(source)
        self._batch_size = batch_size
        self._model: Any = None
        self._onnx: OnnxSentenceEncoder | None = None
        if backend == "onnx" and has_onnx_export(folder):
            self._onnx = OnnxSentenceEncoder(folder, threads)
            self.backend: EmbeddingBackend = "onnx"
            self.dimension, self.max_seq_length = self._onnx.dimension, self._onnx.max_seq_length
            self._tokenizer = self._onnx.tokenizer
            return
        if backend == "onnx":
            logger.info("embedder %s has no ONNX export; it runs on torch", folder)
        from sentence_transformers import SentenceTransformer

        if is_moe_embedder(folder):  # a contrastive MoE embedder (`coe train embedder --variant moe`)
            self._model = load_moe_embedder(folder)
        else:
            self._model = SentenceTransformer(str(folder), device="cpu")
        self.backend = "torch"
        dimension = getattr(self._model, "get_embedding_dimension", None) or self._model.get_sentence_embedding_dimension
        self.dimension = int(dimension())
        self.max_seq_length = int(self._model.max_seq_length)
        self._tokenizer = self._model.tokenizer

    @property
    def model(self) -> Any:
        """The underlying SentenceTransformer (training fine-tunes it); None on the ONNX backend."""
        return self._model

    def too_long(self, texts: list[str]) -> list[bool]:
        """Which texts the embedder will cut at its window (``max_seq_length`` tokens)."""
        lengths = self._tokenizer(texts, add_special_tokens=True, truncation=False)["input_ids"]
        return [len(ids) > self.max_seq_length for ids in lengths]

    def encode(self, texts: list[str], *, show_progress: bool = False) -> np.ndarray:
        """``(len(texts), dimension)`` float32, L2-normalised."""
        if self._onnx is not None:
            return self._onnx.encode(texts, show_progress=show_progress)
        return self._model.encode(
            texts,
            batch_size=self._batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=show_progress,
        ).astype(np.float32)
