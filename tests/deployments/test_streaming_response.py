"""The streaming response cleans up even when the client leaves before its body starts.

Driven through Starlette's own ASGI call: the client's disconnect arrives while the response
start is still being sent, so Starlette cancels the body before the generator ever runs, and a
``finally`` inside the generator would never run.
"""

from __future__ import annotations

import asyncio
from typing import Any, AsyncIterator

from deployments.http_api.streaming import GuardedStreamingResponse


def test_on_close_runs_when_the_client_leaves_before_the_first_byte() -> None:
    events: list[str] = []

    async def body() -> AsyncIterator[str]:
        events.append("body started")
        try:
            yield "data: first\n\n"
        finally:
            events.append("body finished")

    async def receive() -> dict[str, Any]:
        return {"type": "http.disconnect"}

    async def send(message: dict[str, Any]) -> None:
        await asyncio.sleep(0.05)  # a slow socket: the disconnect is noticed first

    async def scenario() -> None:
        response = GuardedStreamingResponse(body(), on_close=lambda: events.append("closed"), media_type="text/event-stream")
        await response({"type": "http", "asgi": {"spec_version": "2.3"}, "method": "POST", "path": "/"}, receive, send)

    asyncio.run(scenario())
    assert "body started" not in events, "Starlette never started the body: a finally inside it could not release anything"
    assert events == ["closed"], "the slot was released and the expert cancelled all the same"
