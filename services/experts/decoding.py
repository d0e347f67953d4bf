"""Per-row decoding state for batched generation.

Every row of a batch keeps its own sampling settings, seed, token budget and stop strings, so
requests with different settings (and, through PEFT, different adapters) still share one
forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

import torch

from services.experts.generation import FinishReason, GenerationEvent, GenerationRequest

REPLACEMENT_CHAR = "\ufffd"


class TextAssembler:
    """Turns a row's tokens into text deltas, honouring stop strings and EOS.

    Text that could still turn out to be the start of a stop string is held back, as is a
    trailing incomplete UTF-8 sequence, so a streamed delta never has to be taken back. Only a
    short window of recent tokens is decoded per step, so long answers stay linear in cost.
    """

    def __init__(self, tokenizer: Any, eos_ids: frozenset[int], stops: tuple[str, ...], max_new_tokens: int) -> None:
        self._tokenizer = tokenizer
        self._eos_ids = eos_ids
        self._stops = stops
        self._holdback = max((len(stop) for stop in stops), default=1) - 1
        self.max_new_tokens = max_new_tokens
        self.token_ids: list[int] = []
        self._text = ""  # decoded so far (complete characters only)
        self._emitted = 0  # characters of _text already sent
        self._prefix_offset = 0  # decoding window: tokens [prefix, read) are already in _text
        self._read_offset = 0

    @property
    def generated_tokens(self) -> int:
        return len(self.token_ids)

    def _decode(self, token_ids: list[int]) -> str:
        return self._tokenizer.decode(token_ids, skip_special_tokens=True, clean_up_tokenization_spaces=False)

    def _extend_text(self, final: bool = False) -> None:
        """Append the text the newest tokens complete; a partial character waits unless final."""
        seen = self._decode(self.token_ids[self._prefix_offset : self._read_offset])
        current = self._decode(self.token_ids[self._prefix_offset :])
        if len(current) > len(seen) and (final or not current.endswith(REPLACEMENT_CHAR)):
            self._text += current[len(seen) :]
            self._prefix_offset, self._read_offset = self._read_offset, len(self.token_ids)

    def add(self, token_id: int) -> tuple[str, FinishReason | None]:
        """Feed one generated token; returns (new text, finish reason or None)."""
        self.token_ids.append(token_id)
        if token_id in self._eos_ids:
            return self.flush(), "stop"
        self._extend_text()
        if self._stops:
            search_from = max(0, self._emitted - self._holdback)
            hits = [index for stop in self._stops if (index := self._text.find(stop, search_from)) >= 0]
            if hits:
                cut = min(hits)
                delta = self._text[self._emitted : cut]
                self._emitted = cut
                return delta, "stop"
        if len(self.token_ids) >= self.max_new_tokens:
            return self.flush(), "length"
        safe_end = len(self._text) - self._holdback
        if safe_end <= self._emitted:
            return "", None
        delta = self._text[self._emitted : safe_end]
        self._emitted = safe_end
        return delta, None

    def flush(self) -> str:
        """Release any held-back text: the row ends without a stop string after it."""
        self._extend_text(final=True)
        delta = self._text[self._emitted :]
        self._emitted = len(self._text)
        return delta


@dataclass
class DecodingRow:
    """One request inside a batch: its settings, progress and where its events go."""

    request: GenerationRequest
    prompt_ids: list[int]
    adapter: str | None
    assembler: TextAssembler
    emit: Callable[[GenerationEvent | BaseException], None]
    generator: torch.Generator | None = None
    finished: bool = False
    cancelled: bool = False
    drill: bool = False  # the prompt carries the configured fault drill
    _counts: torch.Tensor | None = field(default=None, repr=False)

    @property
    def done(self) -> bool:
        return self.finished or self.cancelled

    def penalties(self, vocab_size: int) -> torch.Tensor | None:
        """OpenAI presence/frequency penalties over the tokens generated so far."""
        request = self.request
        if not (request.presence_penalty or request.frequency_penalty) or not self.assembler.token_ids:
            return None
        counts = torch.bincount(torch.tensor(self.assembler.token_ids), minlength=vocab_size)[:vocab_size].float()
        return counts * request.frequency_penalty + (counts > 0).float() * request.presence_penalty


def choose_tokens(rows: list[DecodingRow], logits: torch.Tensor) -> torch.Tensor:
    """Next token of every row, each with its own penalties, temperature, top-p and seed.

    ``logits`` is ``(batch, vocab)`` for the last position; greedy rows take the arg-max,
    sampled rows draw from their own generator so a seed reproduces the same text whatever
    else shares the batch.
    """
    logits = logits.float()
    tokens = logits.argmax(dim=-1)  # (batch,)
    for index, row in enumerate(rows):
        if row.done:
            continue
        scores = logits[index]  # (vocab,)
        penalty = row.penalties(scores.shape[-1])
        if penalty is not None:
            scores = scores - penalty
        if row.request.temperature == 0.0:
            tokens[index] = scores.argmax()
            continue
        # Shifted so that the best score is 0, and in float64, before dividing: any temperature the
        # API accepts (down to 5e-324, which float32 rounds to 0) then gives 0 and -inf, never
        # inf - inf or 0 / 0 = NaN, which would fail every request of the batch.
        probabilities = torch.softmax((scores - scores.max()).double() / row.request.temperature, dim=-1)
        if row.request.top_p < 1.0:
            sorted_probs, order = torch.sort(probabilities, descending=True)
            outside = torch.cumsum(sorted_probs, dim=-1) - sorted_probs >= row.request.top_p
            sorted_probs[outside] = 0.0
            probabilities = torch.zeros_like(probabilities).scatter(0, order, sorted_probs)
        tokens[index] = torch.multinomial(probabilities, 1, generator=row.generator)[0]
    return tokens


def advance_rows(rows: list[DecodingRow], tokens: list[int]) -> None:
    """Feed each live row its new token and emit what the client should see."""
    for row, token in zip(rows, tokens):
        if row.done:
            continue
        text, finish = row.assembler.add(int(token))
        if finish is not None:
            row.finished = True
            row.emit(
                GenerationEvent(
                    text=text,
                    finish_reason=finish,
                    prompt_tokens=len(row.prompt_ids),
                    completion_tokens=row.assembler.generated_tokens,
                )
            )
        elif text:
            row.emit(GenerationEvent(text=text))
