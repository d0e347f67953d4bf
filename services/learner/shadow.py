"""Shadow evaluation: answers from several experts to one sampled request, scored by the reward model.

It runs in the learner, off the request path. The answers come from the service's own OpenAI
endpoint with an explicit ``model`` (so nothing is routed, sampled or cached again), which works
the same whether the learner is a Serve deployment beside the experts or ``coe learner`` on a
laptop pointed at a running service.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path
from typing import Any

from services.artifacts import ArtifactError
from services.config import AppConfig

from services.learner.events import ShadowRequest
from services.learner.online import RoutingLearner, ShadowOutcome, static_choice, third_expert
from services.rewards.model import RewardModel, transcript

logger = logging.getLogger(__name__)


class ShadowEvaluator:
    """Turns a :class:`ShadowRequest` into a :class:`ShadowOutcome` (or None when it cannot)."""

    def __init__(self, reward_model: RewardModel, service_url: str, max_tokens: int, seed: int = 0, api_key: str = "coe-learner") -> None:
        import openai

        self._reward_model = reward_model
        self._client = openai.OpenAI(base_url=service_url, api_key=api_key, max_retries=1, timeout=300)
        self._max_tokens = max_tokens
        self._rng = random.Random(seed)

    def evaluate(self, request: ShadowRequest, learner: RoutingLearner) -> ShadowOutcome | None:
        decision = request.record.decision
        features = decision.features
        if features is None:
            return None
        static_expert = static_choice(decision)
        online_expert = learner.choose(features, fallback=static_expert)
        experts = [static_expert] if online_expert == static_expert else [static_expert, online_expert]
        messages = [turn.model_dump() for turn in request.messages]
        answers = {expert: self._answer(expert, messages) for expert in experts}  # both policies' must answer
        extra = third_expert(learner.experts, set(experts), self._rng)
        if extra is not None:
            try:
                answers[extra] = self._answer(extra, messages)
                experts.append(extra)
            except Exception as exc:  # the extra one only widens the comparison
                logger.info("shadow: expert %s did not answer (%s); comparing without it", extra, exc)
        prompt = transcript(messages)
        scores = self._reward_model.score([prompt] * len(experts), [answers[e] for e in experts], [decision.category] * len(experts))
        rewards = {expert: float(score.reward) for expert, score in zip(experts, scores)}
        return ShadowOutcome(
            completion_id=request.completion_id,
            features=tuple(features),
            static_expert=static_expert,
            online_expert=online_expert,
            rewards=rewards,
        )

    def _answer(self, expert: str, messages: list[dict[str, Any]]) -> str:
        completion = self._client.chat.completions.create(model=expert, messages=messages, max_tokens=self._max_tokens)  # type: ignore[arg-type]
        return completion.choices[0].message.content or ""


def build_evaluator(config: AppConfig) -> ShadowEvaluator | None:
    """The evaluator the config asks for, or None (and why, in the log) when shadow evaluation is off."""
    shadow = config.learner.shadow
    if shadow.sample_rate == 0 or len(config.experts) < 2:
        return None
    folder = Path(config.training.reward_model)
    try:
        reward_model = RewardModel.load(folder)
    except (ArtifactError, OSError) as exc:
        logger.warning("shadow evaluation is off: no usable reward model at %s (%s); train one with `coe train reward`", folder, exc)
        return None
    return ShadowEvaluator(reward_model, shadow.service_url, shadow.max_tokens, seed=shadow.seed)
