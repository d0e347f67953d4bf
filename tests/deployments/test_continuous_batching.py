"""Requests join a running batch: nobody waits for someone else's long answer to finish."""

from __future__ import annotations

import json
from typing import Any

import httpx
from ray import serve
from services.auth.keys import service_headers


def test_a_short_request_finishes_while_a_long_one_keeps_streaming(base_url: str, openai_client: Any) -> None:
    long_body = {
        "model": "smollm2",
        "messages": [{"role": "user", "content": "Write a very long essay about the history of sailing ships."}],
        "max_tokens": 400,
        "temperature": 0,
        "stream": True,
    }
    with httpx.Client(base_url=base_url, headers=service_headers(), timeout=120) as client:
        with client.stream("POST", "/v1/chat/completions", json=long_body) as response:
            lines = (line for line in response.iter_lines() if line)
            next(lines), next(lines)  # the long answer is under way
            short = openai_client.chat.completions.create(
                model="smollm2-math", messages=[{"role": "user", "content": "Add 2 and 3."}], max_tokens=16, temperature=0
            )
            assert short.choices[0].message.content.startswith("Step 1:")
            # The short answer is complete while the long one is still being generated.
            assert expert_stats()["active_rows"] >= 1
            still_streaming = json.loads(next(lines)[len("data: "):])
            assert still_streaming["choices"][0]["finish_reason"] is None


def expert_stats() -> dict[str, Any]:
    return serve.get_deployment_handle("expert-smollm2", app_name="coe").stats.remote().result()
