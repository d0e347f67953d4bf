"""What an expert is asked to generate, and what it streams back.

The ingress turns an OpenAI request into a :class:`GenerationRequest` with the expert's
defaults filled in; local and remote experts both answer with a stream of
:class:`GenerationEvent`, so the ingress renders either the same way.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from services.api.schemas import ChatCompletionRequest
from services.experts.config import GenerationDefaults

FinishReason = Literal["stop", "length"]


class PromptMessage(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: Literal["system", "user", "assistant"]
    content: str


class GenerationRequest(BaseModel):
    """A fully specified generation: every sampling knob has its final value."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    expert: str = Field(description="Expert name; for LoRA experts the adapter to apply.")
    messages: tuple[PromptMessage, ...]
    max_tokens: int = Field(ge=1)
    max_tokens_explicit: bool = Field(description="False when max_tokens came from defaults (then it may be clamped).")
    temperature: float = Field(ge=0.0, le=2.0)
    top_p: float = Field(gt=0.0, le=1.0)
    stop: tuple[str, ...] = ()
    seed: int | None = None
    presence_penalty: float = 0.0
    frequency_penalty: float = 0.0
    stream: bool = Field(True, description="The client reads the answer as it is made; else it travels in fewer, larger chunks.")


class GenerationEvent(BaseModel):
    """One step of output: a text delta, and on the last event the finish reason and usage."""

    model_config = ConfigDict(extra="forbid")

    text: str = ""
    finish_reason: FinishReason | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0

    def followed_by(self, later: "GenerationEvent") -> "GenerationEvent":
        """This event and a later one as one: the texts joined, the later one's ending and usage."""
        return GenerationEvent(text=self.text + later.text, finish_reason=later.finish_reason,
                               prompt_tokens=later.prompt_tokens, completion_tokens=later.completion_tokens)


def build_generation_request(
    request: ChatCompletionRequest, expert: str, defaults: GenerationDefaults
) -> GenerationRequest:
    """Merge request parameters over the expert's defaults.

    ``developer`` is OpenAI's newer name for ``system``; chat templates only know the latter.
    """
    messages = tuple(
        PromptMessage(role="system" if message.role == "developer" else message.role, content=message.text())
        for message in request.messages
    )
    budget = request.completion_budget
    return GenerationRequest(
        expert=expert,
        messages=messages,
        max_tokens=budget if budget is not None else defaults.max_tokens,
        max_tokens_explicit=budget is not None,
        temperature=defaults.temperature if request.temperature is None else request.temperature,
        top_p=defaults.top_p if request.top_p is None else request.top_p,
        stop=tuple(dict.fromkeys((*defaults.stop, *request.stop_sequences))),
        seed=request.seed,
        presence_penalty=request.presence_penalty or 0.0,
        frequency_penalty=request.frequency_penalty or 0.0,
        stream=bool(request.stream),
    )
