"""Completion records, the feedback stream and the shadow stream, in Redis.

The ingress remembers every completion for ``feedback.record_ttl_s``, so that feedback sent
later can be joined with the route decision (and the learner's features) it judges. Accepted
feedback is appended to a Redis Stream that the learner consumes; ``coe feedback export`` reads
the same stream. Unlike the route cache, this path does not fail open: feedback that cannot be
stored is refused with 503, so that the client knows to retry.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator

from pydantic import ValidationError

from services.api.schemas import FeedbackReceipt, FeedbackRequest
from services.cache.config import redacted
from services.cache.connection import async_client, sync_client
from services.config import AppConfig
from services.errors import NotFoundError, ServiceUnavailableError
from services.learner.config import FeedbackOptions
from services.learner.events import EVENT_FIELD, CompletionRecord, FeedbackEvent, ShadowRequest
from services.telemetry.metrics import FEEDBACK_RECEIVED

logger = logging.getLogger(__name__)

EXPORT_PAGE = 500

# One script, so that it is atomic: feedback is never marked seen without being appended, and
# two concurrent submissions for one completion append exactly one entry. It re-checks that the
# record exists because it may have expired since the caller read it.
#   KEYS: record, seen marker, stream, comment
#   ARGV: event JSON, MAXLEN, MINID ('' for none), seen TTL, comment ('' for none), comment TTL
_ACCEPT_SCRIPT = """
if redis.call('EXISTS', KEYS[1]) == 0 then
  return {'unknown', false}
end
if not redis.call('SET', KEYS[2], '-', 'NX', 'EX', ARGV[4]) then
  return {'duplicate', redis.call('GET', KEYS[2])}
end
local id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[2], '*', 'event', ARGV[1])
if ARGV[3] ~= '' then
  redis.call('XTRIM', KEYS[3], 'MINID', '~', ARGV[3])
end
redis.call('SET', KEYS[2], id, 'KEEPTTL')
if ARGV[5] ~= '' then
  redis.call('SET', KEYS[4], ARGV[5], 'EX', ARGV[6])
end
return {'accepted', id}
"""


def _compact(body: object) -> str:
    return json.dumps(body, separators=(",", ":"), ensure_ascii=False)


def record_json(record: CompletionRecord) -> dict[str, Any]:
    """The record as stored: the decision through ``stored()``, so the learner's features survive."""
    body = record.model_dump(mode="json")
    body["decision"] = record.decision.stored()
    return body


def event_json(event: FeedbackEvent | ShadowRequest) -> str:
    """A stream entry's ``event`` field; like :func:`record_json`, the decision keeps its features."""
    body = event.model_dump(mode="json")
    body["record"] = record_json(event.record)
    return _compact(body)


class FeedbackKeys:
    """Key names, derived from the config in one place so writer, endpoint and export agree."""

    def __init__(self, options: FeedbackOptions) -> None:
        self.prefix = options.record_prefix

    def record(self, completion_id: str) -> str:
        return f"{self.prefix}:{completion_id}"

    def seen(self, completion_id: str) -> str:
        return f"{self.prefix}:feedback-seen:{completion_id}"

    def comment(self, completion_id: str) -> str:
        return f"{self.prefix}:comment:{completion_id}"


def _redis_errors() -> tuple[type[BaseException], ...]:
    from redis.exceptions import ConnectionError as RedisConnectionError
    from redis.exceptions import TimeoutError as RedisTimeoutError

    return (RedisConnectionError, RedisTimeoutError, TimeoutError, OSError)


class FeedbackStore:
    """Lives in the ingress replica (async methods run on its event loop); ``export`` is for the CLI."""

    def __init__(self, config: AppConfig) -> None:
        self._cache = config.cache
        self._options = config.learner.feedback
        self._shadow = config.learner.shadow
        self.keys = FeedbackKeys(self._options)
        self._client = async_client(config.cache, timeout_s=self._options.timeout_s)
        self._accept = self._client.register_script(_ACCEPT_SCRIPT)

    def _unavailable(self, exc: BaseException, action: str = "feedback cannot be stored") -> ServiceUnavailableError:
        url = redacted(self._cache.resolved_url())
        return ServiceUnavailableError(
            f"{action}: Redis at {url} did not answer ({exc.__class__.__name__}); retry the request",
            code="feedback_store_unavailable",
        )

    # ------------------------------------------------------------------ writers (ingress)
    async def remember(self, record: CompletionRecord) -> None:
        """Keep the completion's decision until feedback for it is no longer accepted."""
        key = self.keys.record(record.id)
        try:
            await self._client.set(key, _compact(record_json(record)), ex=self._options.record_ttl_s)
        except _redis_errors() as exc:
            raise self._unavailable(exc) from exc

    async def enqueue_shadow(self, request: ShadowRequest) -> None:
        """Queue a routed request for shadow evaluation; when the queue is full the oldest go."""
        try:
            await self._client.xadd(
                self._shadow.stream,
                {EVENT_FIELD: event_json(request)},
                maxlen=self._shadow.stream_maxlen,
                approximate=True,
            )
        except _redis_errors() as exc:
            raise self._unavailable(exc) from exc

    async def accept(self, feedback: FeedbackRequest, key_id: str | None = None) -> FeedbackReceipt:
        """Append the feedback once. Raises :class:`NotFoundError` for an unknown or expired completion.

        With auth on (``key_id`` given), a completion made with another key is unknown too: only
        the key that received a completion id can steer the learner with it.
        """
        keys = self.keys
        try:
            raw = await self._client.get(keys.record(feedback.id))
            if raw is None:
                raise self._not_found(feedback.id)
            record = CompletionRecord.model_validate_json(raw)
            if key_id is not None and record.key_id != key_id:
                raise self._not_found(feedback.id)
            event = FeedbackEvent(
                completion_id=feedback.id,
                rating=feedback.rating,
                score=feedback.score,
                preferred_expert=feedback.preferred_expert,
                has_comment=bool(feedback.comment),
                received_at=time.time(),
                record=record,
            )
            minid = ""
            if self._options.stream_max_age_s is not None:
                minid = str(int((time.time() - self._options.stream_max_age_s) * 1000))
            outcome, stream_id = await self._accept(
                keys=[keys.record(feedback.id), keys.seen(feedback.id), self._options.stream, keys.comment(feedback.id)],
                args=[
                    event_json(event),
                    self._options.stream_maxlen,
                    minid,
                    self._options.record_ttl_s,
                    feedback.comment or "",
                    self._options.comment_retention_s,
                ],
            )
        except _redis_errors() as exc:
            raise self._unavailable(exc) from exc
        outcome = outcome.decode() if isinstance(outcome, bytes) else str(outcome)
        if outcome == "unknown":
            raise self._not_found(feedback.id)
        stream_id = stream_id.decode() if isinstance(stream_id, bytes) else None
        FEEDBACK_RECEIVED.inc(outcome=outcome)
        return FeedbackReceipt(id=feedback.id, accepted=outcome == "accepted", duplicate=outcome == "duplicate", stream_id=stream_id)

    def _not_found(self, completion_id: str) -> NotFoundError:
        return NotFoundError(
            f"No completion with id '{completion_id}' is known: it is unknown or older than the feedback window "
            f"({self._options.record_ttl_s} s).",
            param="id",
            code="completion_not_found",
        )

    # ------------------------------------------------------------------ export (CLI)
    def export(self, out: Path) -> int:
        """Write the feedback stream, joined with each completion's route decision, as JSONL.

        The file appears complete or not at all: it is written beside ``out`` and renamed.
        Returns the number of lines written.
        """
        client = sync_client(self._cache, timeout_s=max(self._options.timeout_s, 5.0))
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        handle = tempfile.NamedTemporaryFile(
            "w", encoding="utf-8", dir=out.parent, prefix=f".{out.name}.", suffix=".tmp", delete=False
        )
        count = 0
        try:
            with handle:
                for page in self._pages(client):
                    comments = client.mget([self.keys.comment(event.completion_id) for _, event in page])
                    for (stream_id, event), comment in zip(page, comments):
                        handle.write(_compact(export_line(stream_id, event, comment)) + "\n")
                        count += 1
            os.replace(handle.name, out)
        except BaseException as exc:
            Path(handle.name).unlink(missing_ok=True)
            if isinstance(exc, _redis_errors()):
                raise self._unavailable(exc, "the feedback stream cannot be read") from exc
            raise
        return count

    def _pages(self, client: Any) -> Iterator[list[tuple[str, FeedbackEvent]]]:
        """The stream in id order, ``EXPORT_PAGE`` entries per XRANGE; unreadable entries are skipped."""
        start = "-"
        while True:
            entries = client.xrange(self._options.stream, min=start, max="+", count=EXPORT_PAGE)
            if not entries:
                return
            page: list[tuple[str, FeedbackEvent]] = []
            for raw_id, fields in entries:
                stream_id = raw_id.decode()
                try:
                    page.append((stream_id, FeedbackEvent.model_validate_json(fields[EVENT_FIELD.encode()])))
                except (KeyError, ValidationError, ValueError) as exc:
                    logger.warning("feedback export: skipping stream entry %s (%s)", stream_id, exc.__class__.__name__)
            if page:
                yield page
            if len(entries) < EXPORT_PAGE:
                return
            start = f"({entries[-1][0].decode()}"


def export_line(stream_id: str, event: FeedbackEvent, comment: bytes | None) -> dict[str, Any]:
    """One JSONL line of ``coe feedback export``: the judgement, the comment if still kept, the route."""
    decision = event.record.decision
    return {
        "stream_id": stream_id,
        "completion_id": event.completion_id,
        "rating": event.rating,
        "score": event.score,
        "label": event.label(),
        "preferred_expert": event.preferred_expert,
        "comment": comment.decode("utf-8") if comment is not None else None,
        "received_at": event.received_at,
        "expert": event.record.expert,
        "requested_model": event.record.requested_model,
        "route": decision.model_dump(mode="json", exclude_none=True),
        "features": list(decision.features) if decision.features is not None else None,
    }
