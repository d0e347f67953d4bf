"""Remote OpenAI-compatible experts (vLLM, a hosted API, another coe-router), over httpx.

Upstream failures are translated into coe-router's own errors: the client's mistakes keep their
4xx status, the upstream's own trouble becomes 502/503/504, and the key never leaves the process.
"""

from __future__ import annotations

import json
import logging
import os
from typing import Any, AsyncIterator

import httpx

from services.errors import CoeError, InvalidRequestError, OverloadedError, UpstreamError
from services.experts.config import OpenAIExpert
from services.experts.generation import GenerationEvent, GenerationRequest

logger = logging.getLogger(__name__)


class RemoteChatBackend:
    """Streams chat completions from one remote expert."""

    def __init__(self, expert: OpenAIExpert) -> None:
        self._expert = expert
        self._client = httpx.AsyncClient(
            base_url=expert.base_url,
            timeout=httpx.Timeout(expert.timeout_s, connect=expert.connect_timeout_s),
        )
        if expert.api_key_env and not os.environ.get(expert.api_key_env):
            logger.warning("expert %s: environment variable %s is not set", expert.name, expert.api_key_env)

    def _headers(self) -> dict[str, str]:
        if not self._expert.api_key_env:
            return {}
        key = os.environ.get(self._expert.api_key_env)
        if not key:
            raise UpstreamError(
                f"expert '{self._expert.name}' needs an API key in ${self._expert.api_key_env}, which is not set",
                status_code=503,
            )
        return {"Authorization": f"Bearer {key}"}

    def _payload(self, request: GenerationRequest) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "model": self._expert.upstream_model,
            "messages": [message.model_dump() for message in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
            "top_p": request.top_p,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if request.stop:
            payload["stop"] = list(request.stop)
        if request.seed is not None:
            payload["seed"] = request.seed
        if request.presence_penalty:
            payload["presence_penalty"] = request.presence_penalty
        if request.frequency_penalty:
            payload["frequency_penalty"] = request.frequency_penalty
        return payload

    async def generate(self, request: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        name = self._expert.name
        try:
            async with self._client.stream(
                "POST", "/chat/completions", json=self._payload(request), headers=self._headers()
            ) as response:
                if response.status_code != 200:
                    raise _upstream_error(name, response.status_code, await response.aread())
                async for event in _events(response):
                    yield event
        except httpx.ConnectError as exc:
            raise UpstreamError(f"expert '{name}' is unreachable at {self._expert.base_url}: {exc}", status_code=503) from exc
        except httpx.TimeoutException as exc:
            raise UpstreamError(f"expert '{name}' timed out: {exc.__class__.__name__}", status_code=504) from exc
        except httpx.HTTPError as exc:
            raise UpstreamError(f"expert '{name}' failed: {exc.__class__.__name__}: {exc}") from exc

    async def close(self) -> None:
        await self._client.aclose()


async def _events(response: httpx.Response) -> AsyncIterator[GenerationEvent]:
    """Parse upstream SSE into events; the finish event carries usage when upstream sends it.

    A stream that ends without ``[DONE]`` and without a finish reason was cut off (the upstream
    crashed or a proxy timed out): that is an error, not an answer that happened to stop.
    """
    finish: str | None = None
    done = False
    text_chunks = 0
    usage: dict[str, int] = {}
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue
        data = line[len("data:"):].strip()
        if data == "[DONE]":
            done = True
            break
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise UpstreamError(f"upstream sent an unreadable event: {data[:200]!r}") from exc
        if "error" in chunk:
            error = chunk["error"] or {}
            raise UpstreamError(f"upstream error: {error.get('message', error)}")
        if chunk.get("usage"):
            usage = chunk["usage"]
        for choice in chunk.get("choices") or []:
            content = (choice.get("delta") or {}).get("content")
            if content:
                text_chunks += 1
                yield GenerationEvent(text=content)
            if choice.get("finish_reason"):
                finish = choice["finish_reason"]
    if finish is None and not done:
        raise UpstreamError("upstream ended the stream without finishing the answer (no finish_reason, no [DONE])")
    yield GenerationEvent(
        finish_reason="length" if finish == "length" else "stop",
        prompt_tokens=int(usage.get("prompt_tokens", 0)),
        completion_tokens=int(usage.get("completion_tokens", text_chunks)),
    )


def _upstream_error(name: str, status: int, body: bytes) -> CoeError:
    try:
        message = json.loads(body)["error"]["message"]
    except (ValueError, KeyError, TypeError):
        message = body[:300].decode("utf-8", "replace")
    if status == 400:  # the request itself was wrong (too long, bad value): the client's to fix
        return InvalidRequestError(f"expert '{name}' rejected the request: {message}")
    if status == 429:
        return OverloadedError(f"expert '{name}' is over its rate limit: {message}")
    return UpstreamError(f"expert '{name}' answered HTTP {status}: {message}", status_code=502)
