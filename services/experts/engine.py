"""Continuous batching for one local base model and the LoRA adapters on it.

One worker thread owns the model, through its backend (``services.experts.backend``). It decodes
all active requests together, one token per step, and admits new requests between steps: a
newcomer's prompt is prefilled (together with any others that arrived) and joins the running
batch, so a request never waits for the others to finish. Finished rows leave the batch at once.

Rows keep their own settings (see ``decoding``) and their own adapter; the backend applies each
row's. Adapter loading and unloading run on the same thread between steps, which serialises
every change to the model without locks around it.

Whatever fails inside a step, every row taken from the queue gets a terminal event: the rows of
the broken batch get an error, the batch state is dropped, and the next step starts clean.
Prefill admits newcomers up to a token budget, so one step's latency stays bounded however many
long prompts arrive together.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import random
import threading
import time
from collections import Counter, deque
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Callable

import numpy as np

from services.errors import ContextLengthError, InvalidRequestError, ServiceUnavailableError
from services.experts.backend import DecoderBackend, RowBatch
from services.experts.config import BatchingOptions
from services.experts.decoding import DecodingRow, TextAssembler, advance_rows, choose_tokens
from services.experts.generation import GenerationEvent, GenerationRequest

logger = logging.getLogger(__name__)

# A whole (non-streamed) answer is read only at its end, so its text travels once a second: still
# often enough for the ingress's watch on silent experts (ingress.timeouts.between_events_s).
WHOLE_ANSWER_INTERVAL_S = 1.0


@dataclass
class EngineStats:
    """Counters a benchmark or metrics endpoint can read."""

    steps: int = 0
    prefills: int = 0
    rows: int = 0
    generated_tokens: int = 0
    busy_seconds: float = 0.0
    largest_batch: int = 0
    active_rows: int = 0  # rows in the running batch right now


def take_for_prefill(pending: deque[DecodingRow], room: int, token_budget: int) -> list[DecodingRow]:
    """Take waiting rows for one prefill pass: at most ``room`` of them and ``token_budget`` prompt
    tokens, in arrival order. A prompt longer than the budget goes alone; cancelled rows are dropped."""
    taken: list[DecodingRow] = []
    tokens = 0
    while pending and len(taken) < room:
        row = pending[0]
        if taken and tokens + len(row.prompt_ids) > token_budget:
            break  # the rest wait for the next step
        pending.popleft()
        if not row.cancelled:
            taken.append(row)
            tokens += len(row.prompt_ids)
    return taken


def prompt_token_ids(tokenizer: Any, messages: list[dict[str, str]]) -> list[int]:
    """The prompt an engine prefills: the chat template rendered (with its generation prompt),
    tokenized without adding special tokens again."""
    text = tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


class StreamOutbox:
    """Where the worker thread puts one row's events; they reach the row's client as chunks: the
    first at once, then at most one per ``interval_s``, each holding the text decoded since the
    last. The final event and an error are never held back.

    A token per message costs more than decoding it on a fast engine: each wakes the replica's
    event loop, crosses Serve to the ingress and goes out as an SSE event, and on two cores that
    work takes its time from the decoding threads (Ray Serve LLM batches its streams the same
    way). Holding the text here, on the worker, also spares the event loop a wake-up per token.
    The next token always comes (or the row ends), so held text waits at most one step longer.
    """

    def __init__(self, deliver: Callable[[GenerationEvent | BaseException], None], interval_s: float) -> None:
        self._deliver = deliver
        self._interval_s = interval_s
        self._held: GenerationEvent | None = None
        self._sent_at: float | None = None

    def __call__(self, item: GenerationEvent | BaseException) -> None:
        if isinstance(item, BaseException):
            self._held = None
            self._deliver(item)
            return
        held = item if self._held is None else self._held.followed_by(item)
        now = time.monotonic()
        if held.finish_reason is not None or self._sent_at is None or now - self._sent_at >= self._interval_s:
            self._held, self._sent_at = None, now
            self._deliver(held)
        else:
            self._held = held


class BatchingEngine:
    """Serves generation requests for one base model in a continuously refilled batch."""

    def __init__(self, backend: DecoderBackend, batching: BatchingOptions, *, name: str = "expert") -> None:
        self._backend = backend
        self._tokenizer = backend.tokenizer
        self._eos_ids = backend.eos_ids
        self._options = batching
        self._lock = threading.Lock()
        self._wakeup = threading.Event()
        self._pending: deque[DecodingRow] = deque()
        self._commands: deque[tuple[Callable[[], Any], Future[Any]]] = deque()
        self._adapter_users: Counter[str] = Counter()
        self._adapters: dict[str, int] = {}  # loaded adapter name -> generation of its latest load
        self._load_generations = itertools.count(1)
        self._batch: RowBatch | None = None
        self._admitting: list[DecodingRow] = []  # taken from the queue, not yet in the batch
        self._closed = False
        self.stats = EngineStats()
        self._worker = threading.Thread(target=self._work, name=f"engine-{name}", daemon=True)
        self._worker.start()

    # ------------------------------------------------------------------ requests
    def tokenize_prompt(self, request: GenerationRequest) -> list[int]:
        """Render the chat template and tokenize; template errors are the client's (400)."""
        try:
            return prompt_token_ids(self._tokenizer, [message.model_dump() for message in request.messages])
        except Exception as exc:  # jinja raises for conversations the template rejects
            raise InvalidRequestError(f"The messages do not fit this expert's chat template: {exc}", param="messages") from exc

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
        prompt_ids = await asyncio.to_thread(self.tokenize_prompt, request)  # the replica's event loop stays free
        if self._backend.context_limit is not None:
            max_context_tokens = min(max_context_tokens, self._backend.context_limit)
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
            emit=StreamOutbox(lambda item: loop.call_soon_threadsafe(queue.put_nowait, item), self._chunk_interval_s(request)),
            generator=self._generator_for(request),
            drill=self._options.fault_drill is not None
            and any(self._options.fault_drill in message.content for message in request.messages),
        )
        with self._lock:
            if self._closed:
                raise ServiceUnavailableError("the expert is shutting down; retry the request")
            self._pending.append(row)
            if adapter is not None:
                self._adapter_users[adapter] += 1
        self._wakeup.set()
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

    def _chunk_interval_s(self, request: GenerationRequest) -> float:
        streamed = self._options.stream_interval_ms / 1000.0
        return streamed if request.stream else max(streamed, WHOLE_ANSWER_INTERVAL_S)

    @staticmethod
    def _generator_for(request: GenerationRequest) -> np.random.Generator | None:
        if request.temperature == 0.0:
            return None
        seed = request.seed if request.seed is not None else random.getrandbits(63)
        return np.random.default_rng(seed % (2**63))

    # ------------------------------------------------------------------ worker
    def _work(self) -> None:
        while not self._closed:
            try:
                self._run_commands()
                idle = self._batch is None
                if idle and not self._pending:
                    self._wakeup.wait(timeout=1.0)
                    self._wakeup.clear()
                    continue
                if idle and self._options.batch_wait_ms and len(self._pending) < self._options.max_batch_size:
                    time.sleep(self._options.batch_wait_ms / 1000.0)  # let concurrent arrivals prefill together
                started = time.perf_counter()
                self._admit()
                if self._batch is not None:
                    self._step()
                self.stats.busy_seconds += time.perf_counter() - started
            except Exception as exc:  # the worker must survive anything a batch does
                logger.exception("engine step failed; failing its rows and dropping the batch")
                self._recover(exc)
        self._shut_down()

    def _shut_down(self) -> None:
        """Answer every row still here, then free the model."""
        with self._lock:
            waiting = list(self._pending)
            self._pending.clear()
        rows = [*(self._batch.rows if self._batch is not None else ()), *self._admitting, *waiting]
        self._batch, self._admitting = None, []
        self._fail(rows, ServiceUnavailableError("the expert is shutting down; retry the request"))
        self._backend.close()

    def _recover(self, error: BaseException) -> None:
        """Fail every row in flight (batch and admission) and start from an empty batch."""
        rows = [*(self._batch.rows if self._batch is not None else ()), *self._admitting]
        self._batch, self._admitting = None, []
        self._fail(rows, ServiceUnavailableError(f"generation failed: {error.__class__.__name__}: {error}"))
        self._backend.reset()
        self.stats.active_rows = 0

    def _run_commands(self) -> None:
        while self._commands:
            command, future = self._commands.popleft()
            if future.set_running_or_notify_cancel():
                try:
                    future.set_result(command())
                except Exception as exc:
                    future.set_exception(exc)

    def _submit(self, command: Callable[[], Any]) -> Future[Any]:
        future: Future[Any] = Future()
        self._commands.append((command, future))
        self._wakeup.set()
        return future

    def _fail(self, rows: list[DecodingRow], error: BaseException) -> None:
        for row in rows:
            if not row.done:
                row.finished = True
                row.emit(error)

    def _admit(self) -> None:
        """Prefill waiting requests and merge them into the running batch."""
        room = self._options.max_batch_size - (len(self._batch.rows) if self._batch else 0)
        with self._lock:
            newcomers = take_for_prefill(self._pending, room, self._options.prefill_token_budget)
            self._admitting = newcomers
        for row in newcomers:
            if row.adapter is not None and row.adapter not in self._adapters:
                self._fail([row], ServiceUnavailableError(f"adapter '{row.adapter}' was unloaded; retry the request"))
        newcomers = [row for row in newcomers if not row.done]
        if not newcomers:
            return
        incoming: RowBatch | None = None
        try:
            incoming = self._backend.prefill(newcomers)
            tokens = choose_tokens(newcomers, incoming.last_logits)
        except Exception as exc:  # the newcomers fail; the running batch is untouched and goes on
            logger.exception("prefill of %d rows failed", len(newcomers))
            self._admitting = []
            self._fail(newcomers, ServiceUnavailableError(f"generation failed: {exc.__class__.__name__}: {exc}"))
            if incoming is not None:
                incoming.without_finished()  # what the backend holds for them is freed
            return
        self.stats.prefills += 1
        self.stats.rows += len(newcomers)
        self._advance(incoming, tokens)
        self._batch = incoming if self._batch is None else self._batch.merge(incoming)
        self._admitting = []
        self._batch = self._batch.without_finished()
        self.stats.active_rows = len(self._batch.rows) if self._batch else 0
        self.stats.largest_batch = max(self.stats.largest_batch, self.stats.active_rows)

    def _step(self) -> None:
        """Decode one token for every active row."""
        batch = self._batch.without_finished() if self._batch else None
        self._batch = batch
        if batch is None:
            return
        self._backend.decode_step(batch)  # a failure here is recovered by ``_work``
        tokens = choose_tokens(batch.rows, batch.last_logits)
        self.stats.steps += 1
        self._advance(batch, tokens)
        self._batch = batch.without_finished()
        self.stats.active_rows = len(self._batch.rows) if self._batch else 0

    def _advance(self, batch: RowBatch, tokens: np.ndarray) -> None:
        if any(row.drill and not row.done for row in batch.rows):
            raise RuntimeError("fault drill: this step fails as a broken kernel would")
        live = sum(not row.done for row in batch.rows)
        advance_rows(batch.rows, tokens.tolist())
        batch.next_tokens = tokens
        self.stats.generated_tokens += live

    # ------------------------------------------------------------------ adapters
    async def load_adapter(self, name: str, path: Path) -> int:
        """Load an adapter (idempotent); returns the load's generation for a later release."""
        return await asyncio.wrap_future(self._submit(lambda: self._load_adapter(name, path)))

    def _load_adapter(self, name: str, path: Path) -> int:
        self._backend.load_adapter(name, path)
        generation = next(self._load_generations)
        self._adapters[name] = generation
        return generation

    def release_adapter(self, name: str, generation: int) -> None:
        """Unload an adapter once nothing uses it; safe to call from any thread."""
        if not self._closed:
            self._submit(lambda: self._release_adapter(name, generation))

    def _release_adapter(self, name: str, generation: int) -> None:
        with self._lock:
            in_use = self._adapter_users[name] > 0
        if self._adapters.get(name) != generation or in_use:
            return  # reloaded since, or still needed
        if self._backend.unload_adapter(name):
            del self._adapters[name]

    @property
    def parameters(self) -> int:
        return self._backend.parameters

    @property
    def backend(self) -> DecoderBackend:
        return self._backend

    @property
    def loaded_adapters(self) -> list[str]:
        return sorted(self._adapters)

    def close(self, timeout_s: float = 30.0) -> None:
        """Stop the worker and wait for it to free the model: a native model freed while the
        interpreter shuts down takes the process with it."""
        self._closed = True
        self._wakeup.set()
        if threading.current_thread() is not self._worker:
            self._worker.join(timeout_s)
