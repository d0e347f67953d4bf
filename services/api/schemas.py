"""OpenAI chat-completions wire schemas, shared by the ingress, the CLI and the benchmarks.

Requests are parsed here (not by FastAPI) so that every problem becomes one OpenAI-style 400
naming the parameter, exactly as the official client expects.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import TYPE_CHECKING, Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from services.errors import InvalidRequestError, UnsupportedParameterError
from services.router.decision import RouteDecision, RoutingKnobs

if TYPE_CHECKING:
    from services.config import AppConfig, InputLimits

ECHO_LIMIT = 80  # characters of a client's value repeated in an error message


def quoted(value: object, limit: int = ECHO_LIMIT) -> str:
    """``repr(value)`` for an error message, cut to ``limit`` characters.

    A name a client sent may be megabytes long, or made to look like a path; the message says
    what was refused without sending it all back (or into the logs).
    """
    text = repr(value)
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters)"


Role = Literal["system", "developer", "user", "assistant"]
KNOWN_ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant")
COMPLETION_ID_PATTERN = r"^chatcmpl-[0-9a-f]{32}$"  # what new_completion_id makes


class TextPart(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: Literal["text"]
    text: str


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Role
    content: Union[str, list[TextPart]]
    name: str | None = None

    def text(self) -> str:
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content)


class StreamOptions(BaseModel):
    model_config = ConfigDict(extra="forbid")

    include_usage: bool = False
    include_obfuscation: bool | None = None


_NULL: dict[str, Any] = {"type": "null"}
_EMPTY_LIST: dict[str, Any] = {"type": "array", "maxItems": 0}
_EMPTY_OBJECT: dict[str, Any] = {"type": "object", "maxProperties": 0}

# What the request's JSON schema (and so the OpenAPI document) says each known-but-unsupported
# parameter may be: only the values that :func:`check_supported` lets through. Declaring the
# type alone would describe requests that always get a 400, and a client (or a fuzzer) reading
# the document could not tell the served request from the refused one.
SERVED_VALUES_OF_UNSUPPORTED: dict[str, dict[str, Any]] = {
    "n": {"anyOf": [{"const": 1}, _NULL]},
    "tools": {"anyOf": [_EMPTY_LIST, _NULL]},
    "tool_choice": {"anyOf": [{"const": "none"}, _NULL]},
    "functions": {"anyOf": [_EMPTY_LIST, _NULL]},
    "function_call": {"anyOf": [{"const": "none"}, _NULL]},
    "response_format": {
        "anyOf": [{"type": "object", "required": ["type"], "properties": {"type": {"const": "text"}}}, _EMPTY_OBJECT, _NULL]
    },
    "logprobs": {"anyOf": [{"const": False}, _NULL]},
    "top_logprobs": {"anyOf": [{"const": 0}, _NULL]},
    "logit_bias": {"anyOf": [_EMPTY_OBJECT, _NULL]},
    "audio": _NULL,
    "modalities": {"anyOf": [{"type": "array", "items": {"const": "text"}, "minItems": 1, "maxItems": 1}, _NULL]},
    "prediction": _NULL,
    "web_search_options": _NULL,
}

# ``model`` is any non-empty string (an unknown one gets a 404), but "auto" is the one every
# deployment serves. Saying so as two disjoint cases lets a reader, and a fuzzer, find the routed
# path: a plain string schema (or an "auto" branch that a wider one contains, which JSON-schema
# tools fold into it) would almost never produce "auto".
MODEL_SCHEMA: dict[str, Any] = {
    "oneOf": [
        {"type": "string", "const": "auto", "description": "Routed: the service picks the expert."},
        {
            "type": "string", "minLength": 1, "not": {"const": "auto"},
            "description": "An expert's name, or `base:adapter` (GET /v1/models lists them); another name gets a 404.",
        },
    ],
}


def _document_chat_request(schema: dict[str, Any]) -> None:
    """The chat request's JSON schema says what is served, not only what parses (see above)."""
    properties = schema["properties"]
    properties["model"] = {"title": "Model", **MODEL_SCHEMA}
    stop = {"type": "string", "minLength": 1}  # _check_stop refuses empty strings
    properties["stop"] = {**properties["stop"], "anyOf": [stop, {"type": "array", "items": stop}, _NULL]}
    for name, served in SERVED_VALUES_OF_UNSUPPORTED.items():
        title = properties[name].get("title")
        properties[name] = {"title": title, "default": None, "description": "Not supported: only these values are accepted.", **served}


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's request that coe-router serves.

    Unsupported-but-known parameters are declared so their presence can be named in a clear
    400 (see :func:`check_supported`); unknown ones are rejected like OpenAI does.
    """

    model_config = ConfigDict(extra="forbid", json_schema_extra=_document_chat_request)

    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    max_tokens: int | None = Field(None, ge=1)
    max_completion_tokens: int | None = Field(None, ge=1)
    temperature: float | None = Field(None, ge=0.0, le=2.0)
    top_p: float | None = Field(None, gt=0.0, le=1.0)
    n: int | None = Field(None, ge=1)
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Union[str, list[str], None] = None
    seed: int | None = Field(None, ge=-(2**63), lt=2**63)
    presence_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    frequency_penalty: float | None = Field(None, ge=-2.0, le=2.0)
    user: str | None = None
    coe: RoutingKnobs | None = Field(None, description="coe-router routing knobs for `model: auto`.")
    store: bool | None = None
    metadata: dict[str, str] | None = None
    service_tier: str | None = None
    # Known OpenAI parameters that this service does not implement.
    tools: list[Any] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    functions: list[Any] | None = None
    function_call: Any = None
    response_format: dict[str, Any] | None = None
    logprobs: bool | None = None
    top_logprobs: int | None = None
    logit_bias: dict[str, float] | None = None
    audio: Any = None
    modalities: list[str] | None = None
    prediction: Any = None
    reasoning_effort: str | None = None
    web_search_options: Any = None

    @field_validator("stop")
    @classmethod
    def _check_stop(cls, value: Union[str, list[str], None]) -> Union[str, list[str], None]:
        # How many are allowed is config (ingress.limits.max_stop_sequences): see check_limits.
        stops = [value] if isinstance(value, str) else (value or [])
        if any(stop == "" for stop in stops):
            raise ValueError("stop sequences must not be empty strings")
        return value

    @property
    def stop_sequences(self) -> tuple[str, ...]:
        if self.stop is None:
            return ()
        return (self.stop,) if isinstance(self.stop, str) else tuple(self.stop)

    @property
    def completion_budget(self) -> int | None:
        """``max_completion_tokens`` is the newer name of ``max_tokens``; both are accepted."""
        return self.max_completion_tokens if self.max_completion_tokens is not None else self.max_tokens

    @property
    def include_usage_chunk(self) -> bool:
        return bool(self.stream_options and self.stream_options.include_usage)

    def plain_messages(self) -> list[dict[str, str]]:
        """The conversation as role and text pairs (content parts joined): what the router reads."""
        return [{"role": message.role, "content": message.text()} for message in self.messages]


def check_supported(request: ChatCompletionRequest) -> None:
    """Reject parameters that would silently change meaning if ignored."""
    if request.n not in (None, 1):
        raise UnsupportedParameterError("n", "only n=1 is served")
    if request.tools:
        raise UnsupportedParameterError("tools", "tool calling is not available")
    if request.tool_choice not in (None, "none"):
        raise UnsupportedParameterError("tool_choice", "tool calling is not available")
    if request.functions:
        raise UnsupportedParameterError("functions", "function calling is not available")
    if request.function_call not in (None, "none"):
        raise UnsupportedParameterError("function_call", "function calling is not available")
    if request.response_format and request.response_format.get("type") != "text":
        raise UnsupportedParameterError("response_format", "only {'type': 'text'} is served")
    if request.logprobs:
        raise UnsupportedParameterError("logprobs")
    if request.top_logprobs:
        raise UnsupportedParameterError("top_logprobs")
    if request.logit_bias:
        raise UnsupportedParameterError("logit_bias")
    if request.audio is not None:
        raise UnsupportedParameterError("audio")
    if request.modalities not in (None, ["text"]):
        raise UnsupportedParameterError("modalities", "only text output is served")
    if request.prediction is not None:
        raise UnsupportedParameterError("prediction")
    if request.web_search_options is not None:
        raise UnsupportedParameterError("web_search_options")


def _param_of(location: tuple[Any, ...]) -> str:
    """pydantic error location → OpenAI-style parameter path, e.g. ``messages[0].role``."""
    path = ""
    for part in location:
        if isinstance(part, int):
            path += f"[{part}]"
        elif part in ("str", "list[TextPart]", "TextPart", "list[str]"):
            continue
        else:
            path += f".{part}" if path else str(part)
    return path


def _message_of(error: dict[str, Any], param: str) -> str:
    kind = error.get("type")
    if kind == "extra_forbidden":
        return f"Unrecognized request argument supplied: {param}"
    if kind == "missing":
        return f"Missing required parameter: '{param}'."
    if kind == "literal_error" and param.endswith(".role"):
        return f"Invalid value for '{param}': {quoted(error.get('input'))} is not a known role; expected one of {list(KNOWN_ROLES)}."
    if kind == "too_short" and param == "messages":
        return "'messages' must contain at least one message."
    return f"Invalid value for '{param}': {error.get('msg', 'invalid')}."


def json_object(body: bytes) -> dict[str, Any]:
    """An HTTP body that must be one JSON object, or a 400 saying why it is not."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidRequestError(
            f"We could not parse the JSON body of your request ({exc.__class__.__name__}: {exc}). "
            "The body must be a JSON object.",
            code="invalid_json",
        ) from exc
    if not isinstance(payload, dict):
        raise InvalidRequestError("The request body must be a JSON object.", code="invalid_json")
    return payload


def check_limits(request: ChatCompletionRequest, limits: InputLimits) -> None:
    """Refuse a request larger than the config allows (``ingress.limits``), naming the limit.

    The body's byte size bounds what a request costs to parse; these bound what it costs to
    serve (prompt size, generation length, stop-sequence matching), so that no single request
    can occupy an expert far longer than the operator decided.
    """
    if len(request.messages) > limits.max_messages:
        raise InvalidRequestError(
            f"Invalid value for 'messages': at most {limits.max_messages} messages are accepted "
            f"(ingress.limits.max_messages); this request has {len(request.messages)}.",
            param="messages",
            code="too_many_messages",
        )
    total_chars = sum(len(message.text()) for message in request.messages)
    if total_chars > limits.max_total_chars:
        raise InvalidRequestError(
            f"Invalid value for 'messages': at most {limits.max_total_chars} characters of content are accepted "
            f"in all messages together (ingress.limits.max_total_chars); this request has {total_chars}.",
            param="messages",
            code="too_many_characters",
        )
    for field in ("max_tokens", "max_completion_tokens"):
        value = getattr(request, field)
        if value is not None and value > limits.max_tokens:
            raise InvalidRequestError(
                f"Invalid value for '{field}': at most {limits.max_tokens} tokens may be asked for "
                f"(ingress.limits.max_tokens); got {value}.",
                param=field,
                code="max_tokens_too_large",
            )
    stops = len(request.stop_sequences)
    if stops > limits.max_stop_sequences:
        raise InvalidRequestError(
            f"Invalid value for 'stop': at most {limits.max_stop_sequences} stop sequences are accepted "
            f"(ingress.limits.max_stop_sequences); got {stops}.",
            param="stop",
            code="too_many_stop_sequences",
        )


def parse_chat_request(body: bytes, limits: InputLimits, *, default_model: str | None = None) -> ChatCompletionRequest:
    """Bytes of an HTTP body → validated request, or an :class:`InvalidRequestError` (400).

    ``limits`` are the config's ``ingress.limits``; ``default_model`` fills a missing ``model``
    (``/v1/route`` does not need one).
    """
    payload = json_object(body)
    if default_model is not None:
        payload.setdefault("model", default_model)
    try:
        request = ChatCompletionRequest.model_validate(payload)
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        # A role error shows once per content variant; report the role, it is what is wrong.
        for error in exc.errors(include_url=False):
            if error.get("type") == "literal_error":
                first = error
                break
        param = _param_of(tuple(first.get("loc", ())))
        raise InvalidRequestError(_message_of(first, param), param=param or None) from exc
    check_limits(request, limits)
    check_supported(request)
    return request


class CacheFlushRequest(BaseModel):
    """Body of ``POST /admin/cache/flush``; an empty body flushes everything."""

    model_config = ConfigDict(extra="forbid")

    version: str | None = Field(None, pattern=r"^[0-9a-f]{16}$", description="Only this router version's entries.")
    levels: list[Literal["l1", "redis"]] = Field(default_factory=lambda: ["l1", "redis"], min_length=1)


def parse_cache_flush(body: bytes) -> CacheFlushRequest:
    try:
        return CacheFlushRequest.model_validate_json(body or b"{}")
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        param = _param_of(tuple(first.get("loc", ())))
        message = _message_of(first, param) if param else f"The request body is not valid: {first.get('msg')}."
        raise InvalidRequestError(message, param=param or None) from exc


def _document_one_judgement(schema: dict[str, Any]) -> None:
    """The JSON schema says what ``_one_judgement`` checks: exactly one of rating or score."""
    schema["anyOf"] = [
        {"required": ["rating"], "properties": {"rating": {"not": _NULL}, "score": _NULL}},
        {"required": ["score"], "properties": {"score": {"not": _NULL}, "rating": _NULL}},
    ]


class FeedbackRequest(BaseModel):
    """Body of ``POST /v1/feedback``: one judgement of one completion.

    Strict types: a client that sends ``"1"`` or ``true`` as a rating has a bug, and a wrong
    label teaches the online learner the wrong thing, so it is refused rather than coerced.
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, json_schema_extra=_document_one_judgement)

    id: str = Field(min_length=1, max_length=128, pattern=COMPLETION_ID_PATTERN, description="The chat completion's id.")
    rating: Literal[-1, 0, 1] | None = Field(None, description="-1 bad, 0 neutral, 1 good.")
    score: float | None = Field(None, ge=0, le=1, description="Graded alternative to `rating`: 0 bad … 1 good.")
    comment: str | None = Field(None, description="Free text; kept apart from the stream, for a limited time.")
    preferred_expert: str | None = Field(None, description="The expert the client thinks should have answered.")

    @model_validator(mode="after")
    def _one_judgement(self) -> FeedbackRequest:
        if (self.rating is None) == (self.score is None):
            raise ValueError("give exactly one of 'rating' or 'score'")
        return self


class FeedbackReceipt(BaseModel):
    """Answer of ``POST /v1/feedback``. A repeat is not an error: retries are safe, and counted once."""

    id: str
    object: Literal["feedback"] = "feedback"
    accepted: bool = Field(description="This call appended the feedback to the stream.")
    duplicate: bool = Field(description="Feedback for this completion had been accepted before; nothing changed.")
    stream_id: str | None = Field(description="The stream entry of the (first) accepted feedback.")


def _feedback_error(error: dict[str, Any]) -> InvalidRequestError:
    param = _param_of(tuple(error.get("loc", ())))
    kind = error.get("type")
    if param == "id" and kind == "string_pattern_mismatch":
        message = f"Invalid value for 'id': {quoted(error.get('input'))} is not a chat completion id (expected 'chatcmpl-' and 32 hex digits)."
    elif param == "rating" and kind == "literal_error":
        message = f"Invalid value for 'rating': {quoted(error.get('input'))}; expected -1, 0 or 1."
    else:
        message = _message_of(error, param)
    return InvalidRequestError(message, param=param or None)


def parse_feedback(body: bytes, config: AppConfig) -> FeedbackRequest:
    """Bytes of an HTTP body → validated feedback, or an :class:`InvalidRequestError` (400).

    Checks that need the config (comment length, expert names) happen here, so the model
    stays a plain schema. ``preferred_expert`` comes back as the expert's name, never an alias.
    """
    payload = json_object(body)
    for field in ("rating", "score"):
        if isinstance(payload.get(field), bool):  # True == 1 in Python; a boolean is not a judgement
            raise InvalidRequestError(
                f"Invalid value for '{field}': booleans are not accepted; "
                + ("use -1, 0 or 1." if field == "rating" else "use a number from 0 to 1."),
                param=field,
            )
    given = [field for field in ("rating", "score") if payload.get(field) is not None]
    if len(given) != 1:
        detail = "the body has both" if given else "the body has neither"
        raise InvalidRequestError(
            f"Give exactly one of 'rating' (-1, 0 or 1) or 'score' (0 to 1); {detail}.", param="rating"
        )
    try:
        feedback = FeedbackRequest.model_validate(payload)
    except ValidationError as exc:
        raise _feedback_error(exc.errors(include_url=False)[0]) from exc
    limit = config.learner.feedback.comment_max_chars
    if feedback.comment is not None and len(feedback.comment) > limit:
        raise InvalidRequestError(
            f"Invalid value for 'comment': at most {limit} characters are accepted "
            f"(learner.feedback.comment_max_chars); this one has {len(feedback.comment)}.",
            param="comment",
        )
    if feedback.preferred_expert is not None:
        expert = config.find_expert(feedback.preferred_expert)
        if expert is None:
            names = [candidate.name for candidate in config.experts]
            raise InvalidRequestError(
                f"Invalid value for 'preferred_expert': {quoted(feedback.preferred_expert)} is not a configured expert; "
                f"expected one of {names}.",
                param="preferred_expert",
            )
        feedback = feedback.model_copy(update={"preferred_expert": expert.name})
    return feedback


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class AssistantMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str


class Choice(BaseModel):
    index: int = 0
    message: AssistantMessage
    finish_reason: Literal["stop", "length"]
    logprobs: None = None


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    route: RouteDecision
    system_fingerprint: str | None = None


class Delta(BaseModel):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(BaseModel):
    index: int = 0
    delta: Delta
    finish_reason: Literal["stop", "length"] | None = None
    logprobs: None = None


class ChatCompletionChunk(BaseModel):
    id: str
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    route: RouteDecision | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int
    owned_by: str = "coe-router"
    kind: str
    cost: float | None = None
    base: str | None = None
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def new_completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())
