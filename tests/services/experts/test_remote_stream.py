"""A remote expert whose stream is cut off: an error, never an answer that merely looks finished."""

from __future__ import annotations

import asyncio
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest

from services.errors import UpstreamError
from services.experts.config import OpenAIExpert
from services.experts.generation import GenerationRequest
from services.experts.remote import RemoteChatBackend


def chunk(content: str | None = None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content else {}
    payload = {"choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}
    return f"data: {json.dumps(payload)}\n\n".encode()


class Upstream(BaseHTTPRequestHandler):
    """An OpenAI-compatible server that streams ``bodies[path]`` and then hangs up."""

    bodies: dict[str, bytes] = {}

    def do_POST(self) -> None:  # noqa: N802 - http.server's naming
        self.rfile.read(int(self.headers["Content-Length"]))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(self.bodies[self.path])
        self.wfile.flush()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def upstream() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), Upstream)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


def answer(base_url: str, path: str) -> list[Any]:
    expert = OpenAIExpert(name="upstream", base_url=f"{base_url}/{path}", cost=1.0)
    request = GenerationRequest(expert="upstream", messages=({"role": "user", "content": "hi"},), max_tokens=8,
                                max_tokens_explicit=True, temperature=0.0, top_p=1.0)

    async def collect() -> list[Any]:
        return [event async for event in RemoteChatBackend(expert).generate(request)]

    return asyncio.run(collect())


def test_a_stream_cut_off_before_it_finished_is_an_error(upstream: str) -> None:
    Upstream.bodies = {
        "/cut/chat/completions": chunk("Hello") + chunk(" wor"),
        "/whole/chat/completions": chunk("Hello") + chunk(finish="stop") + b"data: [DONE]\n\n",
    }
    events = answer(upstream, "whole")
    assert "".join(event.text for event in events) == "Hello" and events[-1].finish_reason == "stop"
    with pytest.raises(UpstreamError, match="without finishing"):
        answer(upstream, "cut")
