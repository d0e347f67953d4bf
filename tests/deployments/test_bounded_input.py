"""Bounded input, against the served app: requests over a configured limit get a 400 that names
it, and path tricks in every name field get a clean 4xx.

Experts, adapters, router versions and completion ids are only ever looked up in the config or
matched against a strict pattern (``services.router.resolve``, ``services.api.schemas``). Each
field that carries such a name is tried here with traversal strings, against the served app and
through the official client where it applies: the answer must be a 400 or 404 in OpenAI's shape
that repeats no more than a bounded part of the name, never a 5xx, and the service must answer
normally afterwards.
"""

from __future__ import annotations

from typing import Any

import openai
import pytest

from services.api.schemas import ECHO_LIMIT, new_completion_id
from services.config import AppConfig, InputLimits

TRAVERSALS = [
    "../../etc/passwd",
    "..\\..\\windows\\win.ini",
    "/etc/passwd",
    "a/../b",
    "%2e%2e/%2e%2e/etc/passwd",
    "..%2f..%2fetc%2fpasswd",
    "smollm2\x00../../etc/passwd",
    "../" * 4000 + "etc/passwd",  # 12 KB
    "~/.ssh/id_rsa",
    "file:///etc/passwd",
]
IDS = ["dotdot", "backslash", "absolute", "inner-dotdot", "encoded", "encoded-slash", "nul", "very-long", "home", "url"]
HELLO = [{"role": "user", "content": "Say hello."}]
# The longest message an echo of a refused name can make: the text around it plus the cut echo.
MAX_ERROR_MESSAGE = 600


def over_the_limit(limits: InputLimits, case: str) -> tuple[dict[str, Any], str, str]:
    """(request fields one past the limit, the parameter at fault, the limit's config path)."""
    return {
        "messages": ({"messages": HELLO * (limits.max_messages + 1)}, "messages", "ingress.limits.max_messages"),
        "characters": ({"messages": [{"role": "user", "content": "x" * (limits.max_total_chars + 1)}]}, "messages",
                       "ingress.limits.max_total_chars"),
        "max_tokens": ({"max_tokens": limits.max_tokens + 1}, "max_tokens", "ingress.limits.max_tokens"),
        "max_completion_tokens": ({"max_completion_tokens": limits.max_tokens + 1}, "max_completion_tokens", "ingress.limits.max_tokens"),
        "stop": ({"stop": [str(n) for n in range(limits.max_stop_sequences + 1)]}, "stop", "ingress.limits.max_stop_sequences"),
    }[case]


@pytest.mark.parametrize("case", ["messages", "characters", "max_tokens", "max_completion_tokens", "stop"])
def test_a_request_over_a_limit_gets_a_400_naming_it(openai_client: Any, http: Any, app_config: AppConfig, case: str) -> None:
    fields, param, limit = over_the_limit(app_config.ingress.limits, case)
    request = {"model": "smollm2", "messages": HELLO, **fields}
    with pytest.raises(openai.BadRequestError) as caught:
        openai_client.chat.completions.create(**request)
    error = caught.value.body
    assert error["param"] == param and f"({limit})" in error["message"], error
    routed = http.post("/v1/route", json=request)  # the dry run reads the same request, with the same limits
    assert_clean_refusal(routed, (400,), param)


def assert_clean_refusal(response: Any, statuses: tuple[int, ...], param: str | None) -> dict[str, Any]:
    """A 4xx in OpenAI's error shape, naming the field, with a bounded message."""
    assert response.status_code in statuses, (response.status_code, response.text[:500])
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert set(error) == {"message", "type", "param", "code"}
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param
    assert len(error["message"]) < MAX_ERROR_MESSAGE, error["message"][:200]
    return error


@pytest.mark.parametrize("name", TRAVERSALS, ids=IDS)
def test_model_and_adapter_names_are_looked_up_in_the_config_only(openai_client: Any, http: Any, name: str) -> None:
    for model in (name, f"smollm2:{name}"):  # an expert's name, and base:adapter
        with pytest.raises(openai.NotFoundError) as caught:
            openai_client.chat.completions.create(model=model, messages=HELLO, max_tokens=2)
        error = caught.value.body
        assert error["param"] == "model" and error["code"] == "model_not_found"
        assert "does not exist" in error["message"] and len(error["message"]) < MAX_ERROR_MESSAGE
        streamed = http.post("/v1/chat/completions", json={"model": model, "messages": HELLO, "max_tokens": 2, "stream": True})
        assert_clean_refusal(streamed, (404,), "model")  # refused before the stream starts


@pytest.mark.parametrize("name", TRAVERSALS, ids=IDS)
def test_feedback_names_are_checked_before_anything_is_stored(http: Any, name: str) -> None:
    by_id = http.post("/v1/feedback", json={"id": name, "rating": 1})
    assert_clean_refusal(by_id, (400,), "id")
    by_expert = http.post("/v1/feedback", json={"id": new_completion_id(), "rating": 1, "preferred_expert": name})
    error = assert_clean_refusal(by_expert, (400,), "preferred_expert")
    assert "is not a configured expert" in error["message"]


@pytest.mark.parametrize("name", TRAVERSALS, ids=IDS)
def test_router_versions_to_flush_match_the_version_pattern(http: Any, name: str) -> None:
    response = http.post("/admin/cache/flush", json={"version": name})
    assert_clean_refusal(response, (400,), "version")
    levels = http.post("/admin/cache/flush", json={"levels": [name]})
    assert_clean_refusal(levels, (400,), "levels[0]")


@pytest.mark.parametrize(
    "path",
    ["/v1/models/..%2F..%2Fetc%2Fpasswd", "/%2e%2e/%2e%2e/etc/passwd", "/v1/%2e%2e/admin/status", "/admin/..%5c..%5cwin.ini",
     "/v1/models/%00", "/static/" + "..%2F" * 500 + "etc/passwd"],
    ids=["models-encoded", "root-dotdot", "v1-dotdot", "backslash", "nul", "very-long"],
)
def test_traversal_in_the_url_path_is_a_plain_404(http: Any, path: str) -> None:
    response = http.get(path)
    assert response.status_code == 404, (response.status_code, response.text[:300])
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error" and error["message"]
    assert "root:" not in response.text  # nothing of /etc/passwd


def test_the_service_answers_normally_after_every_refusal(openai_client: Any) -> None:
    reply = openai_client.chat.completions.create(model="smollm2", messages=HELLO, max_tokens=2, temperature=0)
    assert reply.model == "smollm2" and reply.choices[0].message.content is not None


def test_an_echoed_name_is_cut_to_the_echo_limit(http: Any) -> None:
    name = "x" * 10_000
    error = assert_clean_refusal(http.post("/v1/chat/completions", json={"model": name, "messages": HELLO}), (404,), "model")
    assert "x" * ECHO_LIMIT not in error["message"] and "(10002 characters)" in error["message"]
