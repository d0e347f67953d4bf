"""What the service keeps per completion and what flows through the learner's streams.

The ingress writes these, the learner and ``coe feedback export`` read them: one definition so
that the writer and the readers cannot disagree. Each stream entry holds one field, ``event``,
the JSON of one of the models below.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_serializer

from services.router.decision import RouteDecision

EVENT_FIELD = "event"

Label = Literal["positive", "negative", "neutral"]


class CompletionRecord(BaseModel):
    """Kept in Redis for ``feedback.record_ttl_s`` after a completion: what feedback will refer to."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="The chat completion id the client received.")
    created: int = Field(description="Unix time of the completion.")
    requested_model: str = Field(description="The request's `model` (`auto` when routed).")
    expert: str = Field(description="The LLM expert that answered.")
    decision: RouteDecision = Field(description="The route decision, with the learner's features when routed.")
    key_id: str | None = Field(None, description="The API key's public id (auth on): only that key may give feedback on it.")

    @field_serializer("decision")
    def _keep_features(self, decision: RouteDecision) -> dict[str, object]:
        """Clients never see the features; the record must keep them for the learner."""
        return decision.stored()


class FeedbackEvent(BaseModel):
    """One accepted feedback, as appended to the feedback stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["feedback"] = "feedback"
    completion_id: str
    rating: Literal[-1, 0, 1] | None = None
    score: float | None = Field(None, ge=0, le=1)
    preferred_expert: str | None = None
    has_comment: bool = False
    received_at: float = Field(description="Unix time the service accepted the feedback.")
    record: CompletionRecord

    def label(self) -> Label:
        """A score above 0.5 counts as a rating of 1, below as -1; exactly 0.5 and rating 0 are neutral."""
        if self.rating is not None:
            return {1: "positive", -1: "negative", 0: "neutral"}[self.rating]
        assert self.score is not None
        if self.score > 0.5:
            return "positive"
        return "negative" if self.score < 0.5 else "neutral"


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    role: str
    content: str


class ShadowRequest(BaseModel):
    """A routed request sampled for shadow evaluation, as appended to the shadow stream."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    kind: Literal["shadow"] = "shadow"
    completion_id: str
    messages: tuple[ChatTurn, ...] = Field(min_length=1)
    record: CompletionRecord
