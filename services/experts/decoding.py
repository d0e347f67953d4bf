"""Per-row decoding state for batched generation.

Every row of a batch keeps its own sampling settings, seed, token budget and stop strings, so
requests with different settings (and, through PEFT, different adapters) still share one
forward pass.

Sampling is numpy over the logits a backend hands back: both engines share it, and the
llama.cpp replica never loads torch for it (torch alone is about 180 MiB of a replica).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

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
    generator: np.random.Generator | None = None
    finished: bool = False
    cancelled: bool = False
    drill: bool = False  # the prompt carries the configured fault drill

    @property
    def done(self) -> bool:
        return self.finished or self.cancelled

    def penalties(self, vocab_size: int) -> np.ndarray | None:
        """OpenAI presence/frequency penalties over the tokens generated so far."""
        request = self.request
        if not (request.presence_penalty or request.frequency_penalty) or not self.assembler.token_ids:
            return None
        counts = np.bincount(np.asarray(self.assembler.token_ids), minlength=vocab_size)[:vocab_size].astype(np.float32)
        return counts * request.frequency_penalty + (counts > 0) * np.float32(request.presence_penalty)


def choose_tokens(rows: list[DecodingRow], logits: Any) -> np.ndarray:
    """Next token of every row, each with its own penalties, temperature, top-p and seed.

    ``logits`` is ``(batch, vocab)`` for the last position (any array numpy reads); greedy rows
    take the arg-max, sampled rows draw from their own generator so a seed reproduces the same
    text whatever else shares the batch.
    """
    logits = np.asarray(logits, dtype=np.float32)
    tokens = logits.argmax(axis=-1).astype(np.int64)  # (batch,)
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
        tokens[index] = _sample(scores, row.request.temperature, row.request.top_p, row.generator or np.random.default_rng())
    return tokens


def _sample(scores: np.ndarray, temperature: float, top_p: float, generator: np.random.Generator) -> int:
    """One draw from softmax(scores / temperature), cut to the nucleus of mass ``top_p``."""
    # Shifted so that the best score is 0, and in float64, before dividing: any temperature the
    # API accepts (down to 5e-324, which float32 rounds to 0) then gives weights 1 and 0, never
    # inf - inf or 0 / 0 = NaN, which would fail every request of the batch.
    with np.errstate(over="ignore", divide="ignore", invalid="ignore"):
        weights = np.exp((scores - scores.max()).astype(np.float64) / temperature)  # the best token weighs 1
    if top_p < 1.0:
        order = np.argsort(-weights, kind="stable")
        ranked = weights[order]
        before = np.cumsum(ranked) - ranked  # mass of the tokens ranked above each
        ranked[before >= top_p * ranked.sum()] = 0.0
        weights = np.zeros_like(weights)
        weights[order] = ranked
    cumulative = np.cumsum(weights)
    drawn = int(np.searchsorted(cumulative, generator.random() * cumulative[-1], side="right"))
    return min(drawn, len(weights) - 1)


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
