"""An ``openai``-kind expert: a remote OpenAI-compatible server (here: this app, over HTTP)."""

from __future__ import annotations

from typing import Any

CAPITAL = [{"role": "user", "content": "What is the capital of France?"}]


def test_remote_expert_answers_like_the_model_behind_it(openai_client: Any) -> None:
    direct = openai_client.chat.completions.create(model="smollm2", messages=CAPITAL, max_tokens=16, temperature=0)
    remote = openai_client.chat.completions.create(model="remote-smollm2", messages=CAPITAL, max_tokens=16, temperature=0)
    assert remote.model == "remote-smollm2"
    assert remote.choices[0].message.content == direct.choices[0].message.content
    assert remote.usage.prompt_tokens == direct.usage.prompt_tokens
    assert remote.usage.completion_tokens == direct.usage.completion_tokens


def test_remote_expert_streams(openai_client: Any) -> None:
    stream = openai_client.chat.completions.create(
        model="remote-smollm2", messages=CAPITAL, max_tokens=16, temperature=0, stream=True
    )
    text = "".join(chunk.choices[0].delta.content or "" for chunk in stream if chunk.choices)
    assert "Paris" in text


def test_upstream_rejection_keeps_its_meaning(http: Any) -> None:
    response = http.post(
        "/v1/chat/completions",
        # Within this ingress's limits, beyond the upstream model's context: the upstream's 400 comes back.
        json={"model": "remote-smollm2", "messages": [{"role": "user", "content": "word " * 9000}], "max_tokens": 4},
    )
    assert response.status_code == 400
    assert "maximum context length" in response.json()["error"]["message"]


def test_missing_api_key_is_named_not_sent_empty(http: Any) -> None:
    response = http.post("/v1/chat/completions", json={"model": "remote-without-key", "messages": CAPITAL, "max_tokens": 4})
    assert response.status_code == 503
    assert "needs an API key in $COE_TEST_UNSET_KEY, which is not set" in response.json()["error"]["message"]
