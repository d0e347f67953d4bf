"""The OpenAI-compatible chat API, driven by the official client and by raw HTTP, on both engines:
the session app (transformers) and the same experts on llama.cpp."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import ServedApp


# Phrased so that both engines answer "The capital of France is Paris." (llama.cpp's Q4 kernels answer
# "What is the capital of France?" with nonsense: a 135M model is fragile under quantisation).
CAPITAL = [{"role": "user", "content": "Which city is the capital of France?"}]


def test_non_streaming_answer_with_usage_and_route(served_client: Any) -> None:
    completion = served_client.chat.completions.create(model="smollm2", messages=CAPITAL, max_tokens=16, temperature=0)
    choice = completion.choices[0]
    assert "Paris" in choice.message.content
    assert choice.finish_reason == "stop"
    assert completion.model == "smollm2"
    usage = completion.usage
    assert usage.prompt_tokens > 20 and 0 < usage.completion_tokens <= 16
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    route = completion.model_extra["route"]
    assert route["policy"] == "explicit" and route["expert"] == "smollm2" and route["category"] is None


def test_explicit_model_headers_say_no_category_was_computed(served_client: Any) -> None:
    raw = served_client.chat.completions.with_raw_response.create(model="smollm2", messages=CAPITAL, max_tokens=2, temperature=0)
    assert raw.headers["x-coe-expert"] == "smollm2"
    assert raw.headers["x-coe-policy"] == "explicit"
    assert raw.headers["x-coe-category"] == "none"
    assert raw.headers["x-coe-route-confidence"] == "none"
    assert raw.headers["x-coe-router-version"] == "none"


def test_streaming_matches_non_streaming_and_ends_with_route_and_usage(served_client: Any) -> None:
    whole = served_client.chat.completions.create(model="smollm2", messages=CAPITAL, max_tokens=16, temperature=0)
    chunks = list(
        served_client.chat.completions.create(
            model="smollm2", messages=CAPITAL, max_tokens=16, temperature=0, stream=True, stream_options={"include_usage": True}
        )
    )
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(chunk.choices[0].delta.content or "" for chunk in chunks if chunk.choices)
    assert text == whole.choices[0].message.content
    assert len([chunk for chunk in chunks if chunk.choices and chunk.choices[0].delta.content]) > 1, "the text arrives in parts"
    final = [chunk for chunk in chunks if chunk.choices and chunk.choices[0].finish_reason]
    assert len(final) == 1 and final[0].choices[0].finish_reason == "stop"
    assert final[0].model_extra["route"]["expert"] == "smollm2"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == whole.usage.completion_tokens


def test_raw_sse_stream_is_openai_shaped(served_http: Any) -> None:
    payload = {"model": "smollm2", "messages": CAPITAL, "max_tokens": 6, "temperature": 0, "stream": True}
    with served_http.stream("POST", "/v1/chat/completions", json=payload) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        assert response.headers["x-coe-policy"] == "explicit"
        lines = [line for line in response.iter_lines() if line]
    assert all(line.startswith("data: ") for line in lines)
    assert lines[-1] == "data: [DONE]"
    events = [json.loads(line[len("data: "):]) for line in lines[:-1]]
    assert {event["object"] for event in events} == {"chat.completion.chunk"}
    assert len({event["id"] for event in events}) == 1
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert "usage" not in events[-1]  # only sent when stream_options.include_usage asks for it


def test_max_tokens_gives_length_finish(served_client: Any) -> None:
    completion = served_client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Write a long poem about the sea."}], max_tokens=3, temperature=0
    )
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3


def test_max_completion_tokens_is_an_alias(served_client: Any) -> None:
    completion = served_client.chat.completions.create(
        model="smollm2", messages=[{"role": "user", "content": "Write a long poem about the sea."}], max_completion_tokens=2, temperature=0
    )
    assert completion.usage.completion_tokens == 2


def test_stop_sequence_truncates_and_finishes_with_stop(served_client: Any) -> None:
    completion = served_client.chat.completions.create(
        model="smollm2", messages=CAPITAL, max_tokens=16, temperature=0, stop=["France"]
    )
    assert completion.choices[0].finish_reason == "stop"
    assert completion.choices[0].message.content == "The capital of "


def test_seeded_sampling_is_reproducible(served_client: Any) -> None:
    messages = [{"role": "user", "content": "Invent a name for a cat."}]
    answers = {
        served_client.chat.completions.create(
            model="smollm2", messages=messages, max_tokens=12, temperature=1.2, top_p=0.95, seed=1234
        ).choices[0].message.content
        for _ in range(2)
    }
    assert len(answers) == 1


def test_models_lists_auto_and_every_expert(served_client: Any, served: ServedApp) -> None:
    models = {model.id: model for model in served_client.models.list()}
    assert set(models) == {"auto", *served.experts}
    assert models["smollm2"].model_extra["kind"] == {"transformers": "gguf", "llamacpp": "llamacpp"}[served.engine]
    assert models["smollm2-math"].model_extra["base"] == "smollm2"
    assert abs(models["smollm2"].model_extra["cost"] - 0.1345) < 1e-3


def test_health_and_readiness(served_http: Any, served: ServedApp) -> None:
    assert served_http.get("/healthz").json() == {"status": "ok"}
    ready = served_http.get("/readyz")
    assert ready.status_code == 200 and ready.json()["status"] == "ready"
    assert set(ready.json()["deployments"]) == served.deployments
    assert ready.json()["deployments"]["expert-smollm2"]["kind"] == {"transformers": "gguf", "llamacpp": "llamacpp"}[served.engine]
    assert set(ready.json()["expert_breakers"].values()) == {"closed"}
