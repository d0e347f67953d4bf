"""What the batching engine needs from a model runtime, so one scheduler serves every engine.

The engine (``services.experts.engine``) owns the queue, admission, sampling, stop strings,
streaming and cancellation; a backend owns the model: it prefills rows, decodes one token for
each row of a running batch, and holds LoRA adapters. transformers (``transformers_backend``)
and llama.cpp (``llamacpp_backend``) implement it, so requests behave the same on both.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

import numpy as np

from services.experts.decoding import DecodingRow


class RowBatch(Protocol):
    """Rows decoding together, and the logits of their newest position."""

    rows: list[DecodingRow]
    last_logits: np.ndarray  # (rows, vocab) float32
    next_tokens: np.ndarray  # (rows,) int64, chosen from last_logits, fed by the next decode step

    def without_finished(self) -> "RowBatch | None":
        """Drop finished and cancelled rows (freeing what they held); None when none is left."""

    def merge(self, other: Any) -> "RowBatch":
        """Append ``other``'s rows."""


class DecoderBackend(Protocol):
    tokenizer: Any  # a transformers tokenizer: chat template, encode, decode
    eos_ids: frozenset[int]
    parameters: int
    context_limit: int | None  # tokens one request may use at most, prompt and completion; None: no limit of its own

    def prefill(self, rows: list[DecodingRow]) -> RowBatch:
        """Run the prompts of ``rows``; the returned batch holds their next-token logits."""

    def decode_step(self, batch: RowBatch) -> None:
        """Feed ``batch.next_tokens``; ``batch.last_logits`` becomes the logits after them."""

    def reset(self) -> None:
        """Forget every row: a failed step dropped the batch."""

    def load_adapter(self, name: str, path: Path) -> None:
        """Hold the adapter ``name`` from ``path`` so rows may use it (idempotent)."""

    def unload_adapter(self, name: str) -> bool:
        """Drop the adapter; False when it must stay (the backend keeps it)."""

    def close(self) -> None:
        """Free the model's memory; the engine calls it once its worker has stopped."""
