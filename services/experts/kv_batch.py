"""The state of rows decoding together: a left-padded key/value cache that can grow and shrink.

Rows join (prefilled on their own, then merged) and leave (selected out) between decode steps.
Every row is left-padded to the batch's common length; the attention mask hides the padding, and
position ids count only real tokens, so a row decodes exactly as it would alone.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from services.experts.decoding import DecodingRow


def _left_pad(tensor: torch.Tensor, length: int, dim: int) -> torch.Tensor:
    missing = length - tensor.shape[dim]
    if missing == 0:
        return tensor
    shape = list(tensor.shape)
    shape[dim] = missing
    return torch.cat([tensor.new_zeros(shape), tensor], dim=dim)


def _last_position(logits: torch.Tensor) -> np.ndarray:
    """``(batch, vocab)`` float32 logits of the last position, as the engine's sampling reads them."""
    return logits[:, -1, :].float().numpy()


class KVBatch:
    """Rows, their shared cache, attention mask ``(batch, seq)`` and next input tokens ``(batch,)``."""

    def __init__(self, rows: list[DecodingRow], cache: Any, attention: torch.Tensor, last_logits: np.ndarray) -> None:
        self.rows = rows
        self.cache = cache  # DynamicCache; each layer holds keys/values (batch, kv_heads, seq, head_dim)
        self.attention = attention  # (batch, seq): 1 for real tokens, 0 for left padding
        self.last_logits = last_logits  # (batch, vocab) at the last position
        self.next_tokens = np.zeros(len(rows), dtype=np.int64)  # (batch,) sampled, not yet in the cache

    @classmethod
    @torch.no_grad()
    def prefill(cls, model: Any, tokenizer: Any, rows: list[DecodingRow], extra: dict[str, Any]) -> "KVBatch":
        """Run the prompts of ``rows`` (left-padded together) and keep their cache."""
        encoded = tokenizer.pad({"input_ids": [row.prompt_ids for row in rows]}, padding=True, return_tensors="pt")
        attention = encoded["attention_mask"]  # (batch, prompt)
        positions = (attention.cumsum(-1) - 1).clamp(min=0)
        output = model(
            input_ids=encoded["input_ids"],
            attention_mask=attention,
            position_ids=positions,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        return cls(rows, output.cache, attention, _last_position(output.logits))

    @torch.no_grad()
    def decode_step(self, model: Any, extra: dict[str, Any]) -> None:
        """Feed ``next_tokens``; the cache and mask grow by one position."""
        attention = torch.cat([self.attention, self.attention.new_ones((len(self.rows), 1))], dim=1)
        positions = attention.sum(dim=-1, keepdim=True) - 1  # (batch, 1)
        output = model(
            input_ids=torch.from_numpy(self.next_tokens)[:, None],
            attention_mask=attention,
            position_ids=positions,
            cache=self.cache,
            use_cache=True,
            logits_to_keep=1,
            **extra,
        )
        self.cache = output.cache
        self.attention = attention
        self.last_logits = _last_position(output.logits)

    def without_finished(self) -> "KVBatch | None":
        """Drop finished or cancelled rows, and padding columns no remaining row needs."""
        keep = [index for index, row in enumerate(self.rows) if not row.done]
        if not keep:
            return None
        if len(keep) < len(self.rows):
            index = torch.tensor(keep)
            self.cache.batch_select_indices(index)
            self.rows = [self.rows[position] for position in keep]
            self.attention = self.attention[index]
            self.next_tokens = self.next_tokens[keep]
            self.last_logits = self.last_logits[keep]
        first_used = int(torch.nonzero(self.attention.sum(dim=0))[0])
        if first_used > 0:
            self.attention = self.attention[:, first_used:]
            for layer in self.cache.layers:
                layer.keys = layer.keys[..., first_used:, :]
                layer.values = layer.values[..., first_used:, :]
        return self

    def merge(self, other: "KVBatch") -> "KVBatch":
        """Append ``other``'s rows, left-padding whichever side is shorter."""
        length = max(self.attention.shape[1], other.attention.shape[1])
        for mine, theirs in zip(self.cache.layers, other.cache.layers):
            mine.keys = torch.cat([_left_pad(mine.keys, length, -2), _left_pad(theirs.keys, length, -2)], dim=0)
            mine.values = torch.cat([_left_pad(mine.values, length, -2), _left_pad(theirs.values, length, -2)], dim=0)
        self.attention = torch.cat([_left_pad(self.attention, length, 1), _left_pad(other.attention, length, 1)], dim=0)
        self.next_tokens = np.concatenate([self.next_tokens, other.next_tokens])
        self.last_logits = np.concatenate([self.last_logits, other.last_logits])
        self.rows = self.rows + other.rows
        return self
