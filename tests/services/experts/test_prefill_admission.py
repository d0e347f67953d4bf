"""What one prefill pass takes from the queue: bounded in rows and in prompt tokens."""

from __future__ import annotations

from collections import deque
from typing import Any

from services.experts.decoding import DecodingRow, TextAssembler
from services.experts.engine import take_for_prefill
from services.experts.generation import GenerationRequest


def rows(tokenizer: Any, lengths: list[int]) -> deque[DecodingRow]:
    """Waiting rows whose prompts are ``lengths`` real tokens long."""
    request = GenerationRequest(expert="smollm2", messages=({"role": "user", "content": "hi"},), max_tokens=8,
                                max_tokens_explicit=False, temperature=0.0, top_p=1.0)
    token = tokenizer.convert_tokens_to_ids("the")
    return deque(
        DecodingRow(request=request, prompt_ids=[token] * length, adapter=None,
                    assembler=TextAssembler(tokenizer, frozenset(), (), 8), emit=lambda item: None)
        for length in lengths
    )


def test_long_prompts_arriving_together_are_prefilled_over_several_steps(tokenizer: Any) -> None:
    waiting = rows(tokenizer, [1500, 1500, 1500])
    assert [len(row.prompt_ids) for row in take_for_prefill(waiting, room=8, token_budget=2048)] == [1500]
    assert len(waiting) == 2, "the others wait for the next step instead of making this one slow"


def test_short_prompts_share_a_pass_up_to_the_budget_and_the_room(tokenizer: Any) -> None:
    waiting = rows(tokenizer, [500] * 6)
    assert len(take_for_prefill(waiting, room=8, token_budget=2048)) == 4
    assert len(take_for_prefill(waiting, room=1, token_budget=2048)) == 1


def test_a_prompt_over_the_budget_goes_alone_and_cancelled_rows_are_dropped(tokenizer: Any) -> None:
    waiting = rows(tokenizer, [100, 5000, 100])
    waiting[0].cancelled = True
    assert [len(row.prompt_ids) for row in take_for_prefill(waiting, room=8, token_budget=2048)] == [5000]
    assert [len(row.prompt_ids) for row in take_for_prefill(waiting, room=8, token_budget=2048)] == [100]
