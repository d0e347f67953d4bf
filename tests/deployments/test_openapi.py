"""``/openapi.json`` describes what each endpoint really reads and answers (no Ray needed).

The app's routes are built as the ingress replica builds them; the document is checked as
OpenAPI 3, for its bodies, its security, and for agreeing with the parser on sample requests.
"""

from __future__ import annotations

import json
from typing import Any

import jsonschema
import pytest
import yaml
from fastapi.testclient import TestClient
from openapi_spec_validator import validate
from referencing import Registry
from referencing.jsonschema import DRAFT202012

from deployments.ingress import ROUTES, build_api
from services.api.schemas import SERVED_VALUES_OF_UNSUPPORTED, parse_chat_request, parse_feedback
from services.config import DEFAULT_CONFIG_PATH, InputLimits, parse_config
from services.errors import InvalidRequestError, error_body

BODIES = {
    "/v1/chat/completions": "ChatCompletionRequest",
    "/v1/route": "RouteRequest",
    "/v1/feedback": "FeedbackRequest",
    "/admin/cache/flush": "CacheFlushRequest",
}


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    response = TestClient(build_api()).get("/openapi.json")
    assert response.status_code == 200
    return response.json()


def validator(document: dict[str, Any], component: str) -> jsonschema.Draft202012Validator:
    """A validator for one component schema, its references resolved in the document."""
    registry = Registry().with_resource("urn:doc", DRAFT202012.create_resource(document))
    return jsonschema.Draft202012Validator({"$ref": f"urn:doc#/components/schemas/{component}"}, registry=registry)


def test_the_document_is_valid_openapi_3(document: dict[str, Any]) -> None:
    validate(document)
    assert document["openapi"].startswith("3.")


def test_every_route_is_documented_with_its_request_body(document: dict[str, Any]) -> None:
    for method, path, _ in ROUTES:
        operation = document["paths"][path][method.lower()]
        assert operation["summary"] and "200" in operation["responses"]
        body = operation.get("requestBody")
        if path in BODIES:
            schema = body["content"]["application/json"]["schema"]
            assert schema == {"$ref": f"#/components/schemas/{BODIES[path]}"}
            assert BODIES[path] in document["components"]["schemas"]
        else:
            assert body is None, f"{method} {path} reads no body"
    assert document["paths"]["/admin/cache/flush"]["post"]["requestBody"]["required"] is False  # empty body: flush all


def test_every_endpoint_but_the_probes_needs_a_bearer_key(document: dict[str, Any]) -> None:
    assert document["components"]["securitySchemes"]["bearerAuth"] == {
        "type": "http", "scheme": "bearer", "description": document["components"]["securitySchemes"]["bearerAuth"]["description"],
    }
    assert document["security"] == [{"bearerAuth": []}]
    for path, item in document["paths"].items():
        for method, operation in item.items():
            if path in ("/healthz", "/readyz"):
                assert operation["security"] == [], path
                assert "401" not in operation["responses"]
            else:
                assert "security" not in operation, f"{method} {path} inherits the bearer requirement"
                assert {"401", "403", "429"} <= set(operation["responses"]), path


def test_errors_are_documented_as_openai_error_bodies(document: dict[str, Any]) -> None:
    errors = validator(document, "ErrorResponse")
    errors.validate(error_body("Invalid value for 'stop': …", "invalid_request_error", "stop", "too_many_stop_sequences"))
    errors.validate(error_body("no router is configured", "invalid_request_error"))
    chat = document["paths"]["/v1/chat/completions"]["post"]["responses"]
    assert chat["400"]["content"]["application/json"]["schema"] == {"$ref": "#/components/schemas/ErrorResponse"}
    assert set(chat["200"]["content"]) == {"application/json", "text/event-stream"}


def served_or_refused(raw: dict[str, Any]) -> bool:
    try:
        parse_chat_request(json.dumps(raw).encode(), InputLimits())
    except InvalidRequestError:
        return False
    return True


CHAT_SAMPLES = [
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "smollm2:math", "messages": [{"role": "user", "content": [{"type": "text", "text": "1+1"}]}], "stop": ["\n"]},
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "stop": ""},
    {"model": "", "messages": [{"role": "user", "content": "hi"}]},
    {"model": "auto", "messages": []},
    {"model": "auto", "messages": [{"role": "wizard", "content": "hi"}]},
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "temperature": 3},
    {"model": "auto", "messages": [{"role": "user", "content": "hi"}], "mystery": 1},
]
UNSUPPORTED_SAMPLES = {
    "n": [1, None, 2], "tools": [[], None, [{"type": "function"}]], "tool_choice": ["none", None, "auto"],
    "functions": [[], None, [{"name": "f"}]], "function_call": ["none", None, "auto"],
    "response_format": [{"type": "text"}, {}, None, {"type": "json_object"}, {"schema": {}}],
    "logprobs": [False, None, True], "top_logprobs": [0, None, 3], "logit_bias": [{}, None, {"1": 2.0}],
    "audio": [None, {"voice": "x"}], "modalities": [["text"], None, ["text", "audio"], ["audio"]],
    "prediction": [None, {"type": "content"}], "web_search_options": [None, {}],
}


def test_the_chat_schema_accepts_exactly_what_the_parser_serves(document: dict[str, Any]) -> None:
    """A body the document calls valid is served; one it calls invalid is refused (at these samples)."""
    chat = validator(document, "ChatCompletionRequest")
    samples = list(CHAT_SAMPLES)
    assert set(UNSUPPORTED_SAMPLES) == set(SERVED_VALUES_OF_UNSUPPORTED)
    for name, values in UNSUPPORTED_SAMPLES.items():
        samples += [{"model": "auto", "messages": [{"role": "user", "content": "hi"}], name: value} for value in values]
    for sample in samples:
        assert chat.is_valid(sample) == served_or_refused(sample), sample


def test_the_route_schema_lets_model_out(document: dict[str, Any]) -> None:
    route = validator(document, "RouteRequest")
    assert route.is_valid({"messages": [{"role": "user", "content": "hi"}]})
    assert not validator(document, "ChatCompletionRequest").is_valid({"messages": [{"role": "user", "content": "hi"}]})


def test_the_feedback_schema_says_exactly_one_judgement(document: dict[str, Any]) -> None:
    config = parse_config(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")), folder=DEFAULT_CONFIG_PATH.parent, source="test")
    feedback = validator(document, "FeedbackRequest")
    completion = "chatcmpl-" + "0" * 32
    samples = [
        {"id": completion, "rating": 1}, {"id": completion, "score": 0.5}, {"id": completion, "rating": -1, "score": None},
        {"id": completion}, {"id": completion, "rating": 1, "score": 0.5}, {"id": completion, "rating": True},
        {"id": completion, "rating": 2}, {"id": "chatcmpl-xyz", "rating": 1}, {"id": completion, "score": 1.5},
    ]
    for sample in samples:
        try:
            parse_feedback(json.dumps(sample).encode(), config)
            parsed = True
        except InvalidRequestError:
            parsed = False
        assert feedback.is_valid(sample) == parsed, sample
