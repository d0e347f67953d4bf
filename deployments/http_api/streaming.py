"""Server-sent events of a chat answer, shaped like OpenAI's, and a response that always cleans up.

Once the first chunk is sent, a failure can only be reported in the stream: an error event,
then ``[DONE]``, never a silent truncation. Whatever ends the response (the last event, an
error, or a client that left before the first byte) releases its concurrency slot and stops
the expert.
"""

from __future__ import annotations

import json
import logging
from typing import Any, AsyncIterator, Awaitable, Callable

from fastapi.responses import StreamingResponse

from deployments.http_api.errors import as_coe_error
from services.api.schemas import ChatCompletionChunk, ChunkChoice, Delta, Usage
from services.experts.generation import GenerationEvent
from services.router.decision import RouteDecision

logger = logging.getLogger(__name__)


class GuardedStreamingResponse(StreamingResponse):
    """A streaming response whose ``on_close`` runs however it ends.

    The body generator's own ``finally`` is not enough: when the client leaves before the body
    starts, Starlette never starts the generator, and its ``finally`` never runs.
    """

    def __init__(self, content: AsyncIterator[str], *, on_close: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(content, **kwargs)
        self._on_close = on_close

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            self._on_close()


def usage_of(event: GenerationEvent) -> Usage:
    return Usage(
        prompt_tokens=event.prompt_tokens,
        completion_tokens=event.completion_tokens,
        total_tokens=event.prompt_tokens + event.completion_tokens,
    )


def _sse(chunk: ChatCompletionChunk) -> str:
    # Like OpenAI: null finish_reason is sent, absent usage/route and unset delta fields are not.
    payload = chunk.model_dump(mode="json")
    for key in ("usage", "route"):
        if payload[key] is None:
            del payload[key]
    for choice in payload["choices"]:
        choice["delta"] = {key: value for key, value in choice["delta"].items() if value is not None}
    return f"data: {json.dumps(payload, separators=(',', ':'))}\n\n"


async def chat_events(
    *,
    completion_id: str,
    created: int,
    decision: RouteDecision,
    first: GenerationEvent,
    next_event: Callable[[], Awaitable[GenerationEvent]],
    include_usage: bool,
    on_finished: Callable[[GenerationEvent], Awaitable[None]],
) -> AsyncIterator[str]:
    """The SSE body: role chunk, text deltas, the finish chunk with the route, usage, ``[DONE]``."""

    def delta_chunk(delta: Delta, finish: Any = None, route: RouteDecision | None = None) -> str:
        choice = ChunkChoice(delta=delta, finish_reason=finish)
        return _sse(ChatCompletionChunk(id=completion_id, created=created, model=decision.expert, choices=[choice], route=route))

    try:
        yield delta_chunk(Delta(role="assistant", content=""))
        event = first
        while True:
            if event.text:
                yield delta_chunk(Delta(content=event.text))
            if event.finish_reason is not None:
                await on_finished(event)  # before the yield: the client may leave
                yield delta_chunk(Delta(), event.finish_reason, route=decision)
                if include_usage:
                    yield _sse(ChatCompletionChunk(id=completion_id, created=created, model=decision.expert, choices=[], usage=usage_of(event)))
                break
            event = await next_event()
    except Exception as exc:  # headers are already sent: report the failure in-stream, as OpenAI does
        yield f"data: {json.dumps(as_coe_error(exc).to_body())}\n\n"
    yield "data: [DONE]\n\n"
