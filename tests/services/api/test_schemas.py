"""Request parsing: every malformed request becomes one 400 that names the parameter."""

from __future__ import annotations

import json

import pytest
import yaml

from services.api.schemas import parse_chat_request
from services.config import DEFAULT_CONFIG_PATH, InputLimits, parse_config
from services.errors import InvalidRequestError, UnsupportedParameterError

DEFAULT_LIMITS = InputLimits()  # what a config that says nothing about ingress.limits gets


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
        ),
        DEFAULT_LIMITS,
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
        parse_chat_request(raw, DEFAULT_LIMITS)
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
        parse_chat_request(body(**fields), DEFAULT_LIMITS)
    assert caught.value.param == param


def test_harmless_parameters_are_accepted() -> None:
    request = parse_chat_request(body(n=1, logprobs=False, response_format={"type": "text"}, stream_options={"include_usage": False}, user="u"), DEFAULT_LIMITS)
    assert request.n == 1


# ---------------------------------------------------------------------------------- input limits
SMALL_LIMITS = InputLimits(max_messages=3, max_total_chars=20, max_tokens=8, max_stop_sequences=2)


def user(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


@pytest.mark.parametrize(
    ("fields", "param", "message"),
    [
        ({"messages": [user("a")] * 4}, "messages",
         "at most 3 messages are accepted (ingress.limits.max_messages); this request has 4"),
        ({"messages": [user("x" * 15), {"role": "user", "content": [{"type": "text", "text": "y" * 6}]}]}, "messages",
         "at most 20 characters of content are accepted in all messages together (ingress.limits.max_total_chars); this request has 21"),
        ({"max_tokens": 9}, "max_tokens", "at most 8 tokens may be asked for (ingress.limits.max_tokens); got 9"),
        ({"max_completion_tokens": 4096}, "max_completion_tokens",
         "at most 8 tokens may be asked for (ingress.limits.max_tokens); got 4096"),
        ({"stop": ["a", "b", "c"]}, "stop", "at most 2 stop sequences are accepted (ingress.limits.max_stop_sequences); got 3"),
    ],
)
def test_requests_over_a_configured_limit_get_a_400_naming_it(fields: dict, param: str, message: str) -> None:
    with pytest.raises(InvalidRequestError) as caught:
        parse_chat_request(body(**fields), SMALL_LIMITS)
    assert caught.value.status_code == 400
    assert caught.value.param == param
    assert message in caught.value.message
    assert caught.value.to_body()["error"]["type"] == "invalid_request_error"


def test_requests_exactly_at_every_limit_are_served() -> None:
    request = parse_chat_request(
        body(messages=[user("x" * 10), user("y" * 5), user("z" * 5)], max_tokens=8, max_completion_tokens=8, stop=["a", "b"]),
        SMALL_LIMITS,
    )
    assert len(request.messages) == 3
    assert request.completion_budget == 8
    assert request.stop_sequences == ("a", "b")


def test_a_single_stop_string_counts_as_one_sequence() -> None:
    assert parse_chat_request(body(stop="END"), InputLimits(max_stop_sequences=1)).stop_sequences == ("END",)
    with pytest.raises(InvalidRequestError, match=r"at most 0 stop sequences .*ingress.limits.max_stop_sequences"):
        parse_chat_request(body(stop="END"), InputLimits(max_stop_sequences=0))


def test_the_default_limits_are_the_documented_ones() -> None:
    """A request at the documented defaults passes; one past them is refused."""
    parse_chat_request(body(messages=[user("hi")] * 256, max_tokens=4096, stop=["1", "2", "3", "4"]), DEFAULT_LIMITS)
    with pytest.raises(InvalidRequestError, match="at most 256 messages"):
        parse_chat_request(body(messages=[user("hi")] * 257), DEFAULT_LIMITS)
    with pytest.raises(InvalidRequestError, match="at most 4 stop sequences"):
        parse_chat_request(body(stop=["1", "2", "3", "4", "5"]), DEFAULT_LIMITS)
    with pytest.raises(InvalidRequestError, match="at most 200000 characters"):
        parse_chat_request(body(messages=[user("x" * 200_001)]), DEFAULT_LIMITS)


def test_a_limit_set_in_the_config_file_is_the_one_enforced() -> None:
    """ingress.limits in a config is what parse_chat_request gets from the ingress: one source."""
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["ingress"]["limits"] = {"max_stop_sequences": 1, "max_tokens": 16}
    limits = parse_config(raw, folder=DEFAULT_CONFIG_PATH.parent, source="test").ingress.limits
    with pytest.raises(InvalidRequestError, match=r"at most 1 stop sequences .*\(ingress.limits.max_stop_sequences\)"):
        parse_chat_request(body(stop=["a", "b"]), limits)
    with pytest.raises(InvalidRequestError, match=r"at most 16 tokens .*\(ingress.limits.max_tokens\); got 17"):
        parse_chat_request(body(max_tokens=17), limits)
