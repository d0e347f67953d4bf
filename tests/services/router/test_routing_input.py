"""The routing text: last user turn first, bounded context, empty input refused."""

from __future__ import annotations

import pytest

from services.errors import InvalidRequestError
from services.router.config import ContextPolicy
from services.router.routing_input import routing_text

POLICY = ContextPolicy()


def test_single_turn_is_the_text_with_whitespace_collapsed() -> None:
    assert routing_text([{"role": "user", "content": "  Solve   x+1=2 \n please "}], POLICY) == ("Solve x+1=2 please", False)


def test_follow_up_leads_and_earlier_user_turns_and_system_follow() -> None:
    messages = [
        {"role": "system", "content": "You are a poet."},
        {"role": "user", "content": "Write a poem about autumn leaves."},
        {"role": "assistant", "content": "Leaves fall, gold and red..."},
        {"role": "user", "content": "Now make it shorter."},
    ]
    text, clipped = routing_text(messages, POLICY)
    assert text == "Now make it shorter.\nEarlier: Write a poem about autumn leaves.\nSystem: You are a poet."
    assert "Leaves fall" not in text and not clipped


def test_context_is_bounded() -> None:
    policy = ContextPolicy(max_last_turn_chars=20, earlier_user_turns=1, max_earlier_turn_chars=5, max_system_chars=0)
    messages = [
        {"role": "system", "content": "S" * 50},
        {"role": "user", "content": "first"},
        {"role": "user", "content": "second turn here"},
        {"role": "user", "content": "x" * 100},
    ]
    text, clipped = routing_text(messages, policy)
    assert text == "x" * 20 + "\nEarlier: secon"
    assert clipped


@pytest.mark.parametrize(
    "messages",
    [
        [{"role": "user", "content": "   \n\t "}],
        [{"role": "system", "content": "You are helpful."}],
        [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}, {"role": "user", "content": ""}],
    ],
)
def test_nothing_to_route_on_is_a_400(messages) -> None:
    with pytest.raises(InvalidRequestError, match="nothing to route on") as caught:
        routing_text(messages, POLICY)
    assert caught.value.status_code == 400
