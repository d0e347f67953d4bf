"""The learner's dead-letter stream: entries that failed ``max_attempts`` times, and their replay.

A dead letter keeps the original entry's event and says which stream it came from and why it
failed. Replaying appends the event to its stream again (a new id, so the learner reads it as
new) and deletes the letter in the same transaction, so a letter is never replayed twice or lost
between the two steps.
"""

from __future__ import annotations

from typing import Any

from services.config import AppConfig
from services.learner.events import EVENT_FIELD

PAGE = 200


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def replay_dead_letters(config: AppConfig, redis: Any) -> dict[str, int]:
    """Move every dead letter back to the stream it came from; returns counts by outcome."""
    settings = config.learner
    streams = {settings.feedback.stream, settings.shadow.stream}
    counts = {"replayed": 0, "kept": 0}
    start = "-"
    while True:
        letters = redis.xrange(settings.dead_letter_stream, min=start, max="+", count=PAGE)
        for letter_id, fields in letters:
            stream = _text(fields.get(b"stream", b""))
            event = fields.get(EVENT_FIELD.encode())
            if stream not in streams or event is None:  # not ours to replay: left where it is
                counts["kept"] += 1
                continue
            with redis.pipeline(transaction=True) as pipeline:
                pipeline.xadd(stream, {EVENT_FIELD: event})
                pipeline.xdel(settings.dead_letter_stream, letter_id)
                pipeline.execute()
            counts["replayed"] += 1
        if len(letters) < PAGE:
            return counts
        start = f"({_text(letters[-1][0])}"


def forget_consumer_group(config: AppConfig, redis: Any) -> list[str]:
    """Delete the learner's consumer group on both streams; returns the streams it existed on."""
    import redis as redis_module

    removed = []
    for stream in (config.learner.feedback.stream, config.learner.shadow.stream):
        try:
            if redis.xgroup_destroy(stream, config.learner.consumer_group):
                removed.append(stream)
        except redis_module.ResponseError:  # no such stream
            continue
    return removed
