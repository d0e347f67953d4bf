"""Shadow evaluation: answers from several experts to one sampled request, scored by the reward model.

It runs in the learner, off the request path. The answers come from the service's own OpenAI
endpoint with an explicit ``model`` (so nothing is routed, sampled or cached again), which works
the same whether the learner is a Serve deployment beside the experts or ``coe learner`` on a
laptop pointed at a running service.
"""

from __future__ import annotations

import logging
import random
import time
from pathlib import Path
from typing import Any

from services.artifacts import MANIFEST_NAME, ArtifactError, signing_key
from services.config import AppConfig

from services.learner.events import ShadowRequest
from services.learner.online import RoutingLearner, ShadowOutcome, static_choice, third_expert
from services.rewards.model import RewardModel, transcript

logger = logging.getLogger(__name__)


class ShadowEvaluator:
    """Turns a :class:`ShadowRequest` into a :class:`ShadowOutcome` (or None when it cannot)."""

    def __init__(self, reward_model: RewardModel, service_url: str, max_tokens: int, seed: int = 0, api_key: str = "no-key") -> None:
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


class ShadowUnavailable(RuntimeError):
    """Shadow evaluation cannot run now (no reward model yet); the message says why."""


class RewardModelWatcher:
    """The learner's shadow evaluator, following the reward model's folder as it comes and goes.

    Only shadow evaluation needs the reward model, so the service may start before it exists
    (``make run`` trains it in the background). The folder is checked every ``check_interval_s``:
    a model that appears, or is replaced by a retrained one, is loaded and verified then; a
    broken one is refused and the last good one keeps scoring, as router versions are followed.
    """

    def __init__(self, config: AppConfig, check_interval_s: float | None = None) -> None:
        self._config = config
        self._folder = Path(config.training.reward_model)
        self._key = signing_key(config)
        interval = config.router.watch_interval_s if config.router is not None else 2.0
        self._check_interval_s = interval if check_interval_s is None else check_interval_s
        self._evaluator: ShadowEvaluator | None = None
        self._examined_manifest: bytes | None = None
        self._last_check: float | None = None
        self._off_reason = self._why_off(config)
        self.reason = self._off_reason or "not checked yet"

    @staticmethod
    def _why_off(config: AppConfig) -> str | None:
        if config.learner.shadow.sample_rate == 0:
            return "learner.shadow.sample_rate is 0"
        if len(config.experts) < 2:
            return "only one expert is configured: there is nothing to compare"
        return None

    def poll(self, force: bool = False) -> None:
        """Load the reward model if it appeared or changed since the last look (at most every interval)."""
        if self._off_reason is not None:
            return
        now = time.monotonic()
        if not force and self._last_check is not None and now - self._last_check < self._check_interval_s:
            return
        self._last_check = now
        try:
            manifest = (self._folder / MANIFEST_NAME).read_bytes()
        except OSError:
            if self._evaluator is None:
                self.reason = (
                    f"waiting for a reward model at {self._folder}: none there yet (`make run` trains one in the "
                    "background; or run `coe train reward`)"
                )
            return
        if manifest == self._examined_manifest:
            return  # loaded already, or refused already: look again when it changes
        self._examined_manifest = manifest
        try:
            reward_model = RewardModel.load(self._folder, key=self._key)
        except (ArtifactError, OSError, ValueError) as exc:
            self.reason = f"the reward model at {self._folder} does not load ({exc})" + (
                "; the previous one keeps scoring" if self._evaluator is not None else ""
            )
            logger.warning("shadow evaluation: %s", self.reason)
            return
        shadow = self._config.learner.shadow
        self._evaluator = ShadowEvaluator(reward_model, shadow.service_url, shadow.max_tokens, seed=shadow.seed, api_key=shadow.api_key())
        self.reason = ""
        logger.info("shadow evaluation: scoring with the reward model at %s", self._folder)

    def evaluate(self, request: ShadowRequest, learner: RoutingLearner) -> ShadowOutcome | None:
        self.poll()
        if self._evaluator is None:
            raise ShadowUnavailable(self.reason)
        return self._evaluator.evaluate(request, learner)

    def status(self) -> dict[str, Any]:
        if self._off_reason is not None:
            state = "off"
        else:
            state = "ready" if self._evaluator is not None else "waiting"
        return {"state": state, "reward_model": str(self._folder), "reason": self.reason or None}


def build_evaluator(config: AppConfig) -> RewardModelWatcher:
    """The shadow evaluator of the learner: it follows ``training.reward_model`` (see the watcher)."""
    watcher = RewardModelWatcher(config)
    watcher.poll(force=True)
    if watcher.status()["state"] != "ready":
        logger.warning("shadow evaluation is not running: %s", watcher.reason)
    return watcher
