"""Request parsing: every malformed request becomes one 400 that names the parameter."""

from __future__ import annotations

import json

import pytest

from services.api.schemas import parse_chat_request
from services.errors import InvalidRequestError, UnsupportedParameterError


def body(**fields) -> bytes:
    payload = {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **fields}
    return json.dumps(payload).encode()


def test_valid_request_with_content_parts_and_aliases() -> None:
    request = parse_chat_request(
        body(
            messages=[{"role": "developer", "content": [{"type": "text", "text": "be brief"}]}, {"role": "user", "content": "hi"}],
            max_completion_tokens=12,
            stop="END",
            stream_options={"include_usage": True},
            user="someone",
        )
    )
    assert request.completion_budget == 12
    assert request.stop_sequences == ("END",)
    assert request.messages[0].text() == "be brief"
    assert request.include_usage_chunk


@pytest.mark.parametrize(
    ("raw", "param", "message"),
    [
        (b"{not json", None, "could not parse the JSON body"),
        (b"[1, 2]", None, "must be a JSON object"),
        (json.dumps({"model": "auto"}).encode(), "messages", "Missing required parameter: 'messages'"),
        (body(messages=[]), "messages", "at least one message"),
        (body(messages=[{"role": "wizard", "content": "x"}]), "messages[0].role", "'wizard' is not a known role"),
        (body(temperature=2.5), "temperature", "less than or equal to 2"),
        (body(top_p=0), "top_p", "greater than 0"),
        (body(max_tokens=0), "max_tokens", "greater than or equal to 1"),
        (body(stop=["a", "b", "c", "d", "e"]), "stop", "at most 4 stop sequences"),
        (body(presence_penalty=3), "presence_penalty", "less than or equal to 2"),
        (body(mystery=1), "mystery", "Unrecognized request argument supplied: mystery"),
        (body(messages=[{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]), "messages[0].content[0].type", "Invalid value"),
    ],
)
def test_malformed_requests_name_what_is_wrong(raw: bytes, param: str | None, message: str) -> None:
    with pytest.raises(InvalidRequestError, match=message) as caught:
        parse_chat_request(raw)
    assert caught.value.status_code == 400
    assert caught.value.param == param


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"tools": [{"type": "function", "function": {"name": "f"}}]}, "tools"),
        ({"response_format": {"type": "json_object"}}, "response_format"),
        ({"logprobs": True}, "logprobs"),
        ({"n": 2}, "n"),
        ({"logit_bias": {"1": 5}}, "logit_bias"),
    ],
)
def test_unsupported_openai_parameters_are_named(fields: dict, param: str) -> None:
    with pytest.raises(UnsupportedParameterError, match=f"Parameter '{param}' is not supported") as caught:
        parse_chat_request(body(**fields))
    assert caught.value.param == param


def test_harmless_parameters_are_accepted() -> None:
    request = parse_chat_request(body(n=1, logprobs=False, response_format={"type": "text"}, stream_options={"include_usage": False}, user="u"))
    assert request.n == 1
