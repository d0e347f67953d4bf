"""Bad input gets OpenAI-style errors with the right status; nothing takes a replica down."""

from __future__ import annotations

import json
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import openai
import pytest

from tests.conftest import TEST_INGRESS_LIMIT, TEST_RETRY_AFTER_S, ServedApp
from services.auth.keys import service_headers

USER = [{"role": "user", "content": "Hello"}]


def assert_openai_error(response: httpx.Response, status: int, param: str | None, fragment: str) -> dict:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["param"] == param
    assert fragment in error["message"]
    return error


@pytest.mark.parametrize(
    ("body", "param", "fragment"),
    [
        ("{not json", None, "could not parse the JSON body"),
        (json.dumps({"model": "smollm2"}), "messages", "Missing required parameter"),
        (json.dumps({"model": "smollm2", "messages": []}), "messages", "at least one message"),
        (json.dumps({"model": "smollm2", "messages": [{"role": "oracle", "content": "x"}]}), "messages[0].role", "not a known role"),
        (json.dumps({"model": "smollm2", "messages": USER, "temperature": -1}), "temperature", "greater than or equal to 0"),
        (json.dumps({"model": "smollm2", "messages": USER, "top_p": 1.5}), "top_p", "less than or equal to 1"),
        (json.dumps({"model": "smollm2", "messages": USER, "tools": [{"type": "function"}]}), "tools", "'tools' is not supported"),
        (json.dumps({"model": "smollm2", "messages": USER, "n": 3}), "n", "'n' is not supported"),
        (json.dumps({"model": "smollm2", "messages": USER, "response_format": {"type": "json_object"}}), "response_format", "not supported"),
        (json.dumps({"model": "smollm2", "messages": USER, "logprobs": True}), "logprobs", "not supported"),
    ],
)
def test_bad_requests_get_400(http: Any, body: str, param: str | None, fragment: str) -> None:
    response = http.post("/v1/chat/completions", content=body, headers={"content-type": "application/json"})
    error = assert_openai_error(response, 400, param, fragment)
    assert error["type"] == "invalid_request_error"


def test_unknown_model_gets_404_listing_models(http: Any) -> None:
    response = http.post("/v1/chat/completions", json={"model": "gpt-17", "messages": USER})
    error = assert_openai_error(response, 404, "model", "The model 'gpt-17' does not exist")
    assert "smollm2-math" in error["message"] and error["code"] == "model_not_found"


def test_prompt_longer_than_the_context_names_the_limit(served_http: Any, served: ServedApp) -> None:
    long_prompt = [{"role": "user", "content": "word " * (served.context_limit + 800)}]
    response = served_http.post("/v1/chat/completions", json={"model": "smollm2", "messages": long_prompt, "max_tokens": 4})
    error = assert_openai_error(response, 400, "messages", f"maximum context length is {served.context_limit} tokens")
    assert error["code"] == "context_length_exceeded"
    assert served_http.get("/readyz").status_code == 200, "the expert replica is still up"


def test_completion_budget_beyond_the_context_names_the_limit(served_http: Any, served: ServedApp) -> None:
    # A prompt that fits, with a budget under ingress.limits.max_tokens, that together do not.
    prompt = [{"role": "user", "content": "word " * (served.context_limit * 5 // 8)}]
    body = {"model": "smollm2-code", "messages": prompt, "max_tokens": served.context_limit // 2}
    response = served_http.post("/v1/chat/completions", json=body)
    assert_openai_error(response, 400, "messages", f"maximum context length is {served.context_limit} tokens")


def test_streaming_request_errors_before_the_stream_starts(served_http: Any, served: ServedApp) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "word " * (served.context_limit + 800)}], "stream": True}
    response = served_http.post("/v1/chat/completions", json=body)
    assert_openai_error(response, 400, "messages", "maximum context length")


def test_unknown_path_gets_an_openai_error_body(http: Any) -> None:
    response = http.get("/v1/engines")
    assert response.status_code == 404 and "error" in response.json()


def test_official_client_raises_typed_errors(openai_client: Any) -> None:
    with pytest.raises(openai.NotFoundError):
        openai_client.chat.completions.create(model="nope", messages=USER)
    with pytest.raises(openai.BadRequestError, match="maximum context length"):
        openai_client.chat.completions.create(model="smollm2", messages=[{"role": "user", "content": "word " * 9000}], max_tokens=4)


def test_over_the_concurrency_limit_gets_429_with_retry_after(base_url: str, openai_client: Any) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Tell me a story."}], "max_tokens": 16, "temperature": 0}
    with httpx.Client(base_url=base_url, headers=service_headers(), timeout=120, limits=httpx.Limits(max_connections=64)) as client:
        with ThreadPoolExecutor(max_workers=3 * TEST_INGRESS_LIMIT) as pool:
            responses = list(pool.map(lambda _: client.post("/v1/chat/completions", json=body), range(3 * TEST_INGRESS_LIMIT)))
    statuses = [response.status_code for response in responses]
    assert set(statuses) == {200, 429}, statuses
    assert 0 < statuses.count(200) <= TEST_INGRESS_LIMIT
    rejected = next(response for response in responses if response.status_code == 429)
    assert rejected.headers["retry-after"] == str(TEST_RETRY_AFTER_S)
    assert rejected.json()["error"]["type"] == "rate_limit_error"
    # The limit frees up again once those requests finish.
    assert openai_client.chat.completions.create(model="smollm2", messages=USER, max_tokens=2).choices


def test_client_disconnect_mid_stream_leaves_the_service_healthy(base_url: str, openai_client: Any) -> None:
    body = {"model": "smollm2", "messages": [{"role": "user", "content": "Write a very long essay."}], "max_tokens": 400, "stream": True}
    with httpx.Client(base_url=base_url, headers=service_headers(), timeout=120) as client:
        with client.stream("POST", "/v1/chat/completions", json=body) as response:
            lines = response.iter_lines()
            next(lines), next(lines)
    for _ in range(TEST_INGRESS_LIMIT + 1):  # no slot of the concurrency limit was leaked
        completion = openai_client.chat.completions.create(model="smollm2", messages=USER, max_tokens=1)
        assert completion.choices[0].finish_reason in {"stop", "length"}
