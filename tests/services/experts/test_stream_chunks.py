"""How a row's events reach its client (``StreamOutbox``): the first at once, then at most one
chunk per stream interval, the final one and an error never held back, no text lost."""

from __future__ import annotations

import time

from services.errors import ServiceUnavailableError
from services.experts.engine import StreamOutbox
from services.experts.generation import GenerationEvent

TOKENS = [f"t{index} " for index in range(40)]


def push(items: list, every_s: float, interval_s: float) -> list[tuple[float, object]]:
    """Push ``items`` one per ``every_s``, as the worker does after each step; what was delivered, and when."""
    delivered: list[tuple[float, object]] = []
    started = time.monotonic()
    outbox = StreamOutbox(lambda item: delivered.append((time.monotonic() - started, item)), interval_s)
    for item in items:
        outbox(item)
        time.sleep(every_s)
    return delivered


def events_of(texts: list[str]) -> list[GenerationEvent]:
    final = GenerationEvent(text="end", finish_reason="stop", prompt_tokens=9, completion_tokens=len(texts) + 1)
    return [GenerationEvent(text=text) for text in texts] + [final]


def test_tokens_decoded_between_chunks_travel_together_and_nothing_is_lost() -> None:
    delivered = push(events_of(TOKENS), every_s=0.005, interval_s=0.05)
    events = [event for _, event in delivered]
    assert "".join(event.text for event in events) == "".join(TOKENS) + "end", "every token's text arrives, in order"
    assert events[0].text == TOKENS[0], "the first token is not held back"
    assert len(events) < len(TOKENS) / 3, f"{len(events)} chunks for {len(TOKENS) + 1} tokens decoded 5 ms apart"
    assert events[-1].finish_reason == "stop" and events[-1].completion_tokens == len(TOKENS) + 1
    arrivals = [at for at, _ in delivered]
    gaps = [later - earlier for earlier, later in zip(arrivals[:-2], arrivals[1:-1])]
    assert all(gap >= 0.05 for gap in gaps), f"chunks but the last are at least the interval apart: {gaps}"


def test_with_no_interval_every_token_is_its_own_chunk() -> None:
    delivered = push(events_of(TOKENS[:10]), every_s=0.0, interval_s=0.0)
    assert [event.text for _, event in delivered] == TOKENS[:10] + ["end"]


def test_the_final_event_is_sent_when_it_arrives_not_at_the_interval() -> None:
    delivered = push(events_of(["a", "b"]), every_s=0.001, interval_s=60.0)
    assert [event.text for _, event in delivered] == ["a", "bend"], "the held text goes out with the final event"
    assert delivered[-1][1].finish_reason == "stop" and delivered[-1][0] < 1.0


def test_an_engine_error_is_delivered_at_once() -> None:
    error = ServiceUnavailableError("generation failed")
    delivered = push([GenerationEvent(text="a"), GenerationEvent(text="b"), error], every_s=0.001, interval_s=60.0)
    assert [item for _, item in delivered] == [GenerationEvent(text="a"), error]
