"""Batched generation for one local base model and the LoRA adapters on it.

Concurrent requests wait a few milliseconds in a queue and are then decoded together in one
``generate`` call. Rows keep their own settings (see ``decoding``), and PEFT's mixed-adapter
batches apply each row's adapter, so one batch can serve several LoRA experts at once without
ever switching the model's active adapter under a running request.

All model work (generation, adapter loading and unloading) runs on one worker thread, which
serialises it without locks around the model and keeps the replica's event loop free.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator

import torch
from transformers import GenerationConfig, LogitsProcessorList, StoppingCriteriaList

from services.errors import ContextLengthError, InvalidRequestError, ServiceUnavailableError
from services.experts.config import BatchingOptions
from services.experts.decoding import DecodingRow, PerRowSampler, RowStopper, RowStreamer, TextAssembler
from services.experts.generation import GenerationEvent, GenerationRequest
from services.experts.loading import eos_token_ids

logger = logging.getLogger(__name__)

BASE_ADAPTER = "__base__"  # PEFT's name for "no adapter" in a mixed-adapter batch


@dataclass
class EngineStats:
    """Counters a benchmark or metrics endpoint can read."""

    batches: int = 0
    rows: int = 0
    generated_tokens: int = 0
    busy_seconds: float = 0.0
    largest_batch: int = 0


class BatchingEngine:
    """Serves generation requests for one base model in shared batches."""

    def __init__(self, model: Any, tokenizer: Any, batching: BatchingOptions, *, name: str = "expert") -> None:
        self._base_model = model
        self._model = model
        self._tokenizer = tokenizer
        self._eos_ids = eos_token_ids(model, tokenizer)
        self._options = batching
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"engine-{name}")
        self._lock = threading.Lock()
        self._pending: deque[DecodingRow] = deque()
        self._adapter_users: Counter[str] = Counter()
        self._adapters: dict[str, int] = {}  # loaded adapter name -> generation of its latest load
        self._load_generations = itertools.count(1)
        self._wakeup: asyncio.Event | None = None
        self._scheduler: asyncio.Task[None] | None = None
        self.stats = EngineStats()

    # ------------------------------------------------------------------ requests
    def tokenize_prompt(self, request: GenerationRequest) -> list[int]:
        """Render the chat template and tokenize; template errors are the client's (400)."""
        messages = [message.model_dump() for message in request.messages]
        try:
            text = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        except Exception as exc:  # jinja raises for conversations the template rejects
            raise InvalidRequestError(f"The messages do not fit this expert's chat template: {exc}", param="messages") from exc
        return list(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    @staticmethod
    def completion_budget(request: GenerationRequest, prompt_tokens: int, max_context_tokens: int) -> int:
        """Tokens this request may generate; a context overflow is a 400 that names the limit."""
        if prompt_tokens >= max_context_tokens:
            raise ContextLengthError(
                f"This model's maximum context length is {max_context_tokens} tokens. However, your messages "
                f"resulted in {prompt_tokens} tokens. Please reduce the length of the messages."
            )
        room = max_context_tokens - prompt_tokens
        if request.max_tokens_explicit and request.max_tokens > room:
            raise ContextLengthError(
                f"This model's maximum context length is {max_context_tokens} tokens. However, you requested "
                f"{prompt_tokens + request.max_tokens} tokens ({prompt_tokens} in the messages, "
                f"{request.max_tokens} in the completion). Please reduce the length of the messages or completion."
            )
        return min(request.max_tokens, room)

    async def generate(
        self, request: GenerationRequest, *, adapter: str | None, max_context_tokens: int
    ) -> AsyncIterator[GenerationEvent]:
        """Stream the events of one request; closing the iterator cancels its row."""
        prompt_ids = self.tokenize_prompt(request)
        budget = self.completion_budget(request, len(prompt_ids), max_context_tokens)
        if adapter is not None and adapter not in self._adapters:
            raise ServiceUnavailableError(f"adapter '{adapter}' is not loaded on this replica")
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        row = DecodingRow(
            request=request,
            prompt_ids=prompt_ids,
            adapter=adapter,
            assembler=TextAssembler(self._tokenizer, self._eos_ids, request.stop, budget),
            emit=lambda item: loop.call_soon_threadsafe(queue.put_nowait, item),
            generator=self._generator_for(request),
        )
        self._enqueue(row)
        try:
            while True:
                item = await queue.get()
                if isinstance(item, BaseException):
                    raise item
                yield item
                if item.finish_reason is not None:
                    return
        finally:
            row.cancelled = True
            with self._lock:
                if adapter is not None:
                    self._adapter_users[adapter] -= 1

    @staticmethod
    def _generator_for(request: GenerationRequest) -> torch.Generator | None:
        if request.temperature == 0.0:
            return None
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        return torch.Generator().manual_seed(seed % (2**63))

    def _enqueue(self, row: DecodingRow) -> None:
        with self._lock:
            self._pending.append(row)
            if row.adapter is not None:
                self._adapter_users[row.adapter] += 1
        if self._scheduler is None or self._scheduler.done():
            self._wakeup = asyncio.Event()
            self._scheduler = asyncio.get_running_loop().create_task(self._schedule())
        assert self._wakeup is not None
        self._wakeup.set()

    # ------------------------------------------------------------------ batching
    async def _schedule(self) -> None:
        loop = asyncio.get_running_loop()
        assert self._wakeup is not None
        while True:
            await self._wakeup.wait()
            if self._options.batch_wait_ms and len(self._pending) < self._options.max_batch_size:
                await asyncio.sleep(self._options.batch_wait_ms / 1000.0)
            with self._lock:
                batch: list[DecodingRow] = []
                while self._pending and len(batch) < self._options.max_batch_size:
                    row = self._pending.popleft()
                    if not row.cancelled:
                        batch.append(row)
                if not self._pending:
                    self._wakeup.clear()
            if batch:
                await loop.run_in_executor(self._executor, self._run_batch, batch)

    def _run_batch(self, rows: list[DecodingRow]) -> None:
        started = time.perf_counter()
        try:
            self._generate_batch(rows)
        except Exception as exc:  # a failed batch fails its rows, never the replica
            logger.exception("batch of %d rows failed", len(rows))
            for row in rows:
                if not row.done:
                    row.finished = True
                    row.emit(ServiceUnavailableError(f"generation failed: {exc.__class__.__name__}: {exc}"))
        finally:
            self.stats.batches += 1
            self.stats.rows += len(rows)
            self.stats.largest_batch = max(self.stats.largest_batch, len(rows))
            self.stats.generated_tokens += sum(row.assembler.generated_tokens for row in rows)
            self.stats.busy_seconds += time.perf_counter() - started

    def _generate_batch(self, rows: list[DecodingRow]) -> None:
        for row in rows:
            if row.adapter is not None and row.adapter not in self._adapters and not row.done:
                row.finished = True
                row.emit(ServiceUnavailableError(f"adapter '{row.adapter}' was unloaded; retry the request"))
        live = [row for row in rows if not row.done]
        if not live:
            return
        encoded = self._tokenizer.pad({"input_ids": [row.prompt_ids for row in live]}, padding=True, return_tensors="pt")
        config = GenerationConfig(
            max_new_tokens=max(row.assembler.max_new_tokens for row in live),
            do_sample=False,
            pad_token_id=self._tokenizer.pad_token_id,
            eos_token_id=sorted(self._eos_ids),
        )
        extra: dict[str, Any] = {}
        if self._adapters:
            extra["adapter_names"] = [row.adapter or BASE_ADAPTER for row in live]
        with torch.inference_mode():
            self._model.generate(
                input_ids=encoded["input_ids"],
                attention_mask=encoded["attention_mask"],
                generation_config=config,
                logits_processor=LogitsProcessorList([PerRowSampler(live)]),
                stopping_criteria=StoppingCriteriaList([RowStopper(live)]),
                streamer=RowStreamer(live),
                **extra,
            )

    # ------------------------------------------------------------------ adapters
    async def load_adapter(self, name: str, path: Path) -> int:
        """Load a PEFT adapter (idempotent); returns the load's generation for a later release."""
        return await asyncio.get_running_loop().run_in_executor(self._executor, self._load_adapter, name, path)

    def _load_adapter(self, name: str, path: Path) -> int:
        from peft import PeftModel

        if name not in self._adapters:
            if isinstance(self._model, PeftModel):
                self._model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                self._model = PeftModel.from_pretrained(self._base_model, str(path), adapter_name=name, is_trainable=False)
            self._model.eval()
            logger.info("loaded adapter %s from %s", name, path)
        generation = next(self._load_generations)
        self._adapters[name] = generation
        return generation

    def release_adapter(self, name: str, generation: int) -> None:
        """Unload an adapter once nothing uses it; safe to call from any thread."""
        try:
            self._executor.submit(self._release_adapter, name, generation)
        except RuntimeError:  # the engine is shutting down; the adapter goes with it
            pass

    def _release_adapter(self, name: str, generation: int) -> None:
        with self._lock:
            in_use = self._adapter_users[name] > 0
        if self._adapters.get(name) != generation or in_use or len(self._adapters) == 1:
            return  # reloaded since, still needed, or the last one (PEFT keeps at least one)
        self._model.delete_adapter(name)
        del self._adapters[name]
        logger.info("unloaded adapter %s", name)

    @property
    def loaded_adapters(self) -> list[str]:
        return sorted(self._adapters)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)
