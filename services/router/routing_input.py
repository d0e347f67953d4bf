"""What the router reads of a conversation.

One function turns messages into the routing text, for serving and for training alike, so the
classifier is trained on exactly what it will see. The last user turn leads (the embedder's
window can never cut it off), then up to N earlier user turns, newest first, then the system
prompt, each clipped. Assistant turns are left out: they are long and say little about what
the user wants. A short follow-up ("now make it shorter") is thereby read together with the
request it follows and keeps that request's category.
"""

from __future__ import annotations

import re
from typing import Iterable, Mapping

from services.errors import InvalidRequestError
from services.router.config import ContextPolicy

_WHITESPACE = re.compile(r"\s+")


def collapse_whitespace(text: str) -> str:
    return _WHITESPACE.sub(" ", text).strip()


def _clip(text: str, limit: int) -> tuple[str, bool]:
    return (text, False) if len(text) <= limit else (text[:limit], True)


def routing_text(messages: Iterable[Mapping[str, str]], policy: ContextPolicy) -> tuple[str, bool]:
    """(text to embed, whether the last user turn was clipped).

    Raises :class:`InvalidRequestError` when there is no user text to route on.
    """
    turns = [(message["role"], collapse_whitespace(message.get("content") or "")) for message in messages]
    user_turns = [text for role, text in turns if role == "user"]
    if not user_turns or not user_turns[-1]:
        raise InvalidRequestError(
            "The last user message is empty; there is nothing to route on.", param="messages", code="empty_routing_input"
        )
    last, clipped = _clip(user_turns[-1], policy.max_last_turn_chars)
    parts = [last]
    earlier = [text for text in reversed(user_turns[:-1]) if text][: policy.earlier_user_turns]
    if earlier and policy.max_earlier_turn_chars:
        parts.append("Earlier: " + " | ".join(_clip(text, policy.max_earlier_turn_chars)[0] for text in earlier))
    system = " ".join(text for role, text in turns if role in ("system", "developer") and text)
    if system and policy.max_system_chars:
        parts.append("System: " + _clip(system, policy.max_system_chars)[0])
    return "\n".join(parts), clipped
