"""The llama.cpp backend: the GGUF file run natively, with its quantised kernels.

One model is loaded once; the base and each LoRA adapter get a context of their own over it
(llama.cpp applies adapters per context, not per sequence, and a context per adapter keeps
every decode call free of adapter switches). Rows are sequences of their context: prefilled
and decoded together in llama.cpp's multi-sequence batches, their cells freed the moment they
leave. Each sequence has key/value cells of its own (``n_ctx / max_batch_size``, llama.cpp's
non-unified cache), which is also a request's context limit: a row never runs out mid-answer,
and its attention reads the same cells in the same places whatever else decodes beside it.

With those own cells, attention without flash attention, and llama.cpp built without
llamafile's tiled products and repacked weights (the Makefile), a request's logits do not depend
on what else shares its batch. Sampling stays the engine's (``decoding.choose_tokens`` over the
logits read back), as do the chat template and detokenising (the model's own transformers
tokenizer), so a request is treated exactly as on the transformers engine.
"""

from __future__ import annotations

import ctypes
import logging
import os
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from services.experts.config import LlamaCppExpert
from services.experts.decoding import DecodingRow
from services.experts.gguf_adapter import verified_gguf_adapter
from services.experts.loading import load_tokenizer, locate_weights

logger = logging.getLogger(__name__)

_BACKEND_READY = threading.Lock()
_log_callback: Any = None  # referenced for as long as llama.cpp may call it
LLAMA_LOG_LEVELS = {3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level WARN and ERROR; DEBUG, INFO and CONT are dropped


def _forward_log(level: int, text: bytes, _: Any) -> None:
    if level in LLAMA_LOG_LEVELS:
        logger.log(LLAMA_LOG_LEVELS[level], "llama.cpp: %s", text.decode("utf-8", "replace").rstrip())


def _llama() -> Any:
    """The bindings, initialised once per process; llama.cpp's warnings and errors go to this
    module's logger, its per-call chatter nowhere."""
    global _log_callback
    import llama_cpp

    with _BACKEND_READY:
        if _log_callback is None:
            _log_callback = llama_cpp.llama_log_callback(_forward_log)
            llama_cpp.llama_log_set(_log_callback, ctypes.c_void_p(0))
            llama_cpp.llama_backend_init()
    return llama_cpp


@dataclass
class _Context:
    """One llama.cpp context: the base model, or the base with one adapter applied."""

    handle: Any
    memory: Any
    adapter: Any = None  # llama_adapter_lora pointer, freed with the context
    free_sequences: list[int] = field(default_factory=list)


@dataclass
class _Sequence:
    context: _Context
    seq_id: int
    position: int  # tokens already in its cells


def by_context(sequences: list[_Sequence]) -> list[list[int]]:
    """Indexes of ``sequences`` grouped per context (one decode call each), by ascending sequence
    id within a group: with a cache per sequence, llama.cpp ran a batch in descending order at 60%
    speed."""
    groups: dict[int, list[int]] = {}
    for index, sequence in enumerate(sequences):
        groups.setdefault(id(sequence.context), []).append(index)
    return [sorted(members, key=lambda index: sequences[index].seq_id) for members in groups.values()]


class SequenceBatch:
    """Rows decoding together, each a sequence of its adapter's context."""

    def __init__(self, backend: "LlamaCppBackend", rows: list[DecodingRow], sequences: list[_Sequence], last_logits: np.ndarray) -> None:
        self._backend = backend
        self.rows = rows
        self.sequences = sequences
        self.last_logits = last_logits
        self.next_tokens = np.zeros(len(rows), dtype=np.int64)

    def without_finished(self) -> "SequenceBatch | None":
        keep = [index for index, row in enumerate(self.rows) if not row.done]
        for index, sequence in enumerate(self.sequences):
            if self.rows[index].done:
                self._backend.release(sequence)
        if not keep:
            return None
        if len(keep) < len(self.rows):
            self.rows = [self.rows[position] for position in keep]
            self.sequences = [self.sequences[position] for position in keep]
            self.last_logits = self.last_logits[keep]
            self.next_tokens = self.next_tokens[keep]
        return self

    def merge(self, other: "SequenceBatch") -> "SequenceBatch":
        self.rows = self.rows + other.rows
        self.sequences = self.sequences + other.sequences
        self.last_logits = np.concatenate([self.last_logits, other.last_logits])
        self.next_tokens = np.concatenate([self.next_tokens, other.next_tokens])
        return self


class LlamaCppBackend:
    """A GGUF model in llama.cpp, with a context for the base and one per loaded adapter."""

    def __init__(self, expert: LlamaCppExpert, model: Any, tokenizer: Any, max_sequences: int) -> None:
        self._llama = _llama()
        self._expert = expert
        self._options = expert.llamacpp
        self._model = model
        self._max_sequences = max_sequences
        vocab = self._llama.llama_model_get_vocab(model)
        self._vocab_size = int(self._llama.llama_vocab_n_tokens(vocab))
        self.tokenizer = tokenizer
        self.eos_ids = frozenset(
            int(token)
            for token in (tokenizer.eos_token_id, self._llama.llama_vocab_eos(vocab), self._llama.llama_vocab_eot(vocab))
            if token is not None and int(token) >= 0
        )
        self.parameters = int(self._llama.llama_model_n_params(model))
        self._batch = self._llama.llama_batch_init(max(self._options.n_batch, max_sequences), 0, 1)
        self._contexts: dict[str | None, _Context] = {None: self._new_context(None)}
        self.context_limit = int(self._llama.llama_n_ctx_seq(self._contexts[None].handle))

    @classmethod
    def load(cls, expert: LlamaCppExpert, key: bytes | None = None) -> "LlamaCppBackend":
        """Map the GGUF file (nothing is converted) and read the tokenizer it carries."""
        llama = _llama()
        path = locate_weights(expert).weights_path
        params = llama.llama_model_default_params()
        params.n_gpu_layers = 0
        model = llama.llama_model_load_from_file(str(path).encode(), params)
        if not model:
            raise RuntimeError(f"expert '{expert.name}': llama.cpp could not load {path}")
        tokenizer = load_tokenizer(expert, key)
        if getattr(tokenizer, "chat_template", None) is None:
            raise RuntimeError(f"expert '{expert.name}': the tokenizer of {path} has no chat template")
        logger.info("loaded %s in llama.cpp from %s", expert.name, path)
        return cls(expert, model, tokenizer, expert.batching.max_batch_size)

    # ------------------------------------------------------------------ contexts
    def _new_context(self, adapter_path: Path | None) -> _Context:
        llama = self._llama
        params = llama.llama_context_default_params()
        params.n_ctx = self._options.n_ctx
        params.n_batch = self._options.n_batch
        params.n_ubatch = min(self._options.n_ubatch, self._options.n_batch)
        params.n_seq_max = self._max_sequences
        # Cells of its own per sequence: in one shared pool a sequence's cells interleave with the
        # others', and its attention sums them in another order than alone (greedy answers then
        # changed with the traffic). Flash attention's CPU kernel moved a prompt's logits by up to
        # 1.1 when other prompts shared the batch, so it is off too.
        params.kv_unified = False
        params.flash_attn_type = llama.LLAMA_FLASH_ATTN_TYPE_DISABLED
        threads = self._options.threads or os.cpu_count() or 1
        params.n_threads = threads
        params.n_threads_batch = self._options.batch_threads or threads
        params.no_perf = True
        adapter = None
        if adapter_path is not None:
            adapter = llama.llama_adapter_lora_init(self._model, str(adapter_path).encode())
            if not adapter:
                raise RuntimeError(f"llama.cpp could not load the LoRA adapter {adapter_path}")
        handle = llama.llama_init_from_model(self._model, params)
        if not handle:
            if adapter is not None:
                llama.llama_adapter_lora_free(adapter)
            raise RuntimeError(f"expert '{self._expert.name}': llama.cpp could not create a context of {params.n_ctx} cells")
        if adapter is not None:
            adapters = (llama.llama_adapter_lora_p_ctypes * 1)(adapter)
            scales = (ctypes.c_float * 1)(1.0)
            if llama.llama_set_adapters_lora(handle, adapters, 1, scales) != 0:
                llama.llama_free(handle)
                llama.llama_adapter_lora_free(adapter)
                raise RuntimeError(f"llama.cpp could not apply the LoRA adapter {adapter_path}")
        return _Context(handle, llama.llama_get_memory(handle), adapter, self._all_sequences())

    def _all_sequences(self) -> list[int]:
        return list(range(self._max_sequences))[::-1]  # popped from the end: id 0 first

    def _free_context(self, context: _Context) -> None:
        self._llama.llama_free(context.handle)
        if context.adapter is not None:
            self._llama.llama_adapter_lora_free(context.adapter)

    def load_adapter(self, name: str, path: Path) -> None:
        if name not in self._contexts:
            self._contexts[name] = self._new_context(verified_gguf_adapter(path))
            logger.info("loaded adapter %s from %s", name, path)

    def unload_adapter(self, name: str) -> bool:
        context = self._contexts.get(name)
        if context is None or len(context.free_sequences) < self._max_sequences:
            return False  # a sequence still decodes in it
        del self._contexts[name]
        self._free_context(context)
        logger.info("unloaded adapter %s", name)
        return True

    # ------------------------------------------------------------------ sequences
    def sequences_in_use(self) -> dict[str, int]:
        """Sequences holding cells, per context (``base`` or the adapter's name)."""
        used = {name or "base": self._max_sequences - len(context.free_sequences) for name, context in self._contexts.items()}
        return {name: count for name, count in used.items() if count}

    def release(self, sequence: _Sequence) -> None:
        """Free a sequence's cells and id (its row finished, was cancelled or failed)."""
        context = sequence.context
        self._llama.llama_memory_seq_rm(context.memory, sequence.seq_id, -1, -1)
        context.free_sequences.append(sequence.seq_id)

    def reset(self) -> None:
        for context in self._contexts.values():
            self._llama.llama_memory_clear(context.memory, True)
            context.free_sequences = self._all_sequences()

    def _decode(self, context: _Context, entries: list[tuple[int, int, int, bool]]) -> None:
        """One llama_decode of (token, position, sequence id, wants logits) entries."""
        batch = self._batch
        for index, (token, position, seq_id, wants_logits) in enumerate(entries):
            batch.token[index] = token
            batch.pos[index] = position
            batch.n_seq_id[index] = 1
            batch.seq_id[index][0] = seq_id
            batch.logits[index] = wants_logits
        batch.n_tokens = len(entries)
        status = self._llama.llama_decode(context.handle, batch)
        if status != 0:
            raise RuntimeError(f"llama_decode returned {status}")

    def _copy_logits(self, context: _Context, index: int, into: np.ndarray) -> None:
        """The logits of entry ``index`` of the context's last decode call, copied once, into a row."""
        into[:] = np.ctypeslib.as_array(self._llama.llama_get_logits_ith(context.handle, index), shape=(self._vocab_size,))

    def prefill(self, rows: list[DecodingRow]) -> SequenceBatch:
        sequences: list[_Sequence] = []
        try:
            for row in rows:
                context = self._contexts[row.adapter]
                sequences.append(_Sequence(context, context.free_sequences.pop(), len(row.prompt_ids)))
            logits = np.empty((len(rows), self._vocab_size), dtype=np.float32)
            for members in by_context(sequences):
                context = sequences[members[0]].context
                pending: list[tuple[int, int, int, bool]] = []
                owners: list[int] = []  # the row whose last prompt token each entry with logits is
                for index in members:
                    row, sequence = rows[index], sequences[index]
                    last = len(row.prompt_ids) - 1
                    for position, token in enumerate(row.prompt_ids):
                        pending.append((token, position, sequence.seq_id, position == last))
                        owners.append(index if position == last else -1)
                        if len(pending) == self._options.n_batch:
                            self._decode_chunk(context, pending, owners, logits)
                            pending, owners = [], []
                if pending:
                    self._decode_chunk(context, pending, owners, logits)
        except BaseException:
            for sequence in sequences:
                self.release(sequence)
            raise
        return SequenceBatch(self, rows, sequences, logits)

    def _decode_chunk(self, context: _Context, entries: list[tuple[int, int, int, bool]], owners: list[int], logits: np.ndarray) -> None:
        self._decode(context, entries)
        for index, owner in enumerate(owners):
            if owner >= 0:
                self._copy_logits(context, index, logits[owner])

    def decode_step(self, batch: SequenceBatch) -> None:
        logits = np.empty((len(batch.rows), self._vocab_size), dtype=np.float32)
        tokens = batch.next_tokens.tolist()
        for members in by_context(batch.sequences):
            sequences = [batch.sequences[index] for index in members]
            self._decode(sequences[0].context, [(tokens[index], sequence.position, sequence.seq_id, True)
                                                for index, sequence in zip(members, sequences)])
            for entry, (index, sequence) in enumerate(zip(members, sequences)):
                self._copy_logits(sequence.context, entry, logits[index])
                sequence.position += 1
        batch.last_logits = logits

    def close(self) -> None:
        for context in self._contexts.values():
            self._free_context(context)
        self._contexts.clear()
        self._llama.llama_batch_free(self._batch)
        self._llama.llama_model_free(self._model)
