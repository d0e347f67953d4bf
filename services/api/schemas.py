"""OpenAI chat-completions wire schemas, shared by the ingress, the CLI and the benchmarks.

Requests are parsed here (not by FastAPI) so that every problem becomes one OpenAI-style 400
naming the parameter, exactly as the official client expects.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.errors import InvalidRequestError, UnsupportedParameterError
from services.router.decision import RouteDecision, RoutingKnobs

Role = Literal["system", "developer", "user", "assistant"]
KNOWN_ROLES: tuple[str, ...] = ("system", "developer", "user", "assistant")
MAX_STOP_SEQUENCES = 4


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


class ChatCompletionRequest(BaseModel):
    """The subset of OpenAI's request that coe-router serves.

    Unsupported-but-known parameters are declared so their presence can be named in a clear
    400 (see :func:`check_supported`); unknown ones are rejected like OpenAI does.
    """

    model_config = ConfigDict(extra="forbid")

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
        stops = [value] if isinstance(value, str) else (value or [])
        if len(stops) > MAX_STOP_SEQUENCES:
            raise ValueError(f"at most {MAX_STOP_SEQUENCES} stop sequences are allowed, got {len(stops)}")
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
        return f"Invalid value for '{param}': {error.get('input')!r} is not a known role; expected one of {list(KNOWN_ROLES)}."
    if kind == "too_short" and param == "messages":
        return "'messages' must contain at least one message."
    return f"Invalid value for '{param}': {error.get('msg', 'invalid')}."


def parse_chat_request(body: bytes, *, default_model: str | None = None) -> ChatCompletionRequest:
    """Bytes of an HTTP body → validated request, or an :class:`InvalidRequestError` (400).

    ``default_model`` fills a missing ``model`` (``/v1/route`` does not need one).
    """
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
