"""What the ingress keeps of a finished completion: the record feedback refers to, a shadow
sample for the learner now and then, and its key's real token count."""

from __future__ import annotations

import asyncio
import logging
import random

from deployments.http_api.access import Gatekeeper
from deployments.http_api.background_writes import BackgroundWrites
from deployments.http_api.streaming import usage_of
from services.api.schemas import ChatCompletionRequest
from services.auth.authenticate import Caller
from services.config import AppConfig
from services.experts.generation import GenerationEvent
from services.learner.events import ChatTurn, CompletionRecord, ShadowRequest
from services.learner.feedback_store import FeedbackStore
from services.router.decision import RouteDecision

logger = logging.getLogger(__name__)

RECORD_HEAD_START_S = 0.05  # how long a response may wait for its completion record to be stored


class CompletionRecords:
    def __init__(self, config: AppConfig, feedback: FeedbackStore, gate: Gatekeeper) -> None:
        self._config = config
        self._feedback = feedback
        self._gate = gate
        self._writes = BackgroundWrites()
        self._rng = random.Random()

    async def completed(
        self, chat: ChatCompletionRequest, decision: RouteDecision, completion_id: str, created: int, caller: Caller,
        estimated_tokens: int, final: GenerationEvent,
    ) -> None:
        """Remember a finished completion for feedback (and maybe sample it for the shadow), and
        correct its key's token charge with the real count.

        The write gets a brief head start, so that feedback sent the moment the answer arrives
        finds its record; past ``RECORD_HEAD_START_S`` it goes on in the background. Nothing here
        may fail the response the client is about to get: problems are logged.
        """
        try:
            record = CompletionRecord(
                id=completion_id, created=created, requested_model=chat.model, expert=decision.expert, decision=decision,
                key_id=caller.key_id,
            )
            if caller.record is not None:  # a key's tokens: charge the real count now the answer has ended
                usage = usage_of(final)
                self._writes.start(
                    self._gate.correct(caller, estimated_tokens, usage.prompt_tokens + usage.completion_tokens),
                    f"token count of completion {completion_id}",
                )
            shadow = None
            if self._samples_shadow(decision) and self._rng.random() < self._config.learner.shadow.sample_rate:
                turns = tuple(ChatTurn(role=message.role, content=message.text()) for message in chat.messages)
                shadow = ShadowRequest(completion_id=completion_id, messages=turns, record=record)
        except Exception:
            logger.warning("could not build the record of completion %s", completion_id, exc_info=True)
            return
        task = self._writes.start(self._store(record, shadow), f"completion {completion_id}")
        await asyncio.wait({task}, timeout=RECORD_HEAD_START_S)

    def _samples_shadow(self, decision: RouteDecision) -> bool:
        """Only routed requests are evaluated in the shadow, and only when there are experts to compare."""
        learner = self._config.learner
        return (
            decision.policy in ("static", "online")
            and learner.enabled
            and learner.shadow.sample_rate > 0
            and len(self._config.experts) >= 2
        )

    async def _store(self, record: CompletionRecord, shadow: ShadowRequest | None) -> None:
        await self._feedback.remember(record)
        if shadow is not None:
            await self._feedback.enqueue_shadow(shadow)
