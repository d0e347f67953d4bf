"""The transformers backend: a causal LM in float32, batches as a left-padded key/value cache.

PEFT's mixed-adapter forward applies each row's adapter, so one batch serves several LoRA
experts without ever switching the model's active adapter.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from services.experts.decoding import DecodingRow
from services.experts.kv_batch import KVBatch
from services.experts.loading import eos_token_ids

logger = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


class TransformersBackend:
    """One transformers model and the PEFT adapters loaded on it."""

    context_limit = None

    def __init__(self, model: Any, tokenizer: Any) -> None:
        self._base_model = model
        self._model = model
        self._adapters: set[str] = set()
        self.tokenizer = tokenizer
        self.eos_ids = eos_token_ids(model, tokenizer)
        self.parameters = sum(parameter.numel() for parameter in model.parameters())

    def _adapter_names(self, rows: list[DecodingRow]) -> dict[str, Any]:
        if not self._adapters:
            return {}
        return {"adapter_names": [row.adapter or BASE_ADAPTER for row in rows]}

    def prefill(self, rows: list[DecodingRow]) -> KVBatch:
        return KVBatch.prefill(self._model, self.tokenizer, rows, self._adapter_names(rows))

    def decode_step(self, batch: KVBatch) -> None:
        batch.decode_step(self._model, self._adapter_names(batch.rows))

    def reset(self) -> None:
        pass  # a dropped KVBatch takes its cache with it

    def load_adapter(self, name: str, path: Path) -> None:
        from peft import PeftModel

        if name in self._adapters:
            return
        if isinstance(self._model, PeftModel):
            self._model.load_adapter(str(path), adapter_name=name, is_trainable=False)
        else:
            self._model = PeftModel.from_pretrained(self._base_model, str(path), adapter_name=name, is_trainable=False)
        self._model.eval()
        self._adapters.add(name)
        logger.info("loaded adapter %s from %s", name, path)

    def unload_adapter(self, name: str) -> bool:
        if name not in self._adapters or len(self._adapters) == 1:
            return False  # PEFT keeps at least one adapter
        self._model.delete_adapter(name)
        self._adapters.discard(name)
        logger.info("unloaded adapter %s", name)
        return True

    def close(self) -> None:
        pass  # the model is freed with the last reference to it
