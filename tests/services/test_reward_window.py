"""Long conversations in the reward encoder's window: the oldest turns go, the final exchange stays,
and both responses of a pair are read after the same context.

The real MiniLM tokenizer from its package; no model weights are needed.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.rewards.network import encode_pairs
from services.rewards.truncation import ELISION, SPECIAL_TOKENS, fit_prompts, split_turns, token_counts

MAX_LENGTH = 128
FINAL_TURN = "Human: So which of the two flats should I rent, the one near the station or the quiet one?"
SHORT_ANSWER = "The quiet one."
LONG_ANSWER = (
    "Take the quiet one if you work from home: the rent is lower, the street is calm, and the extra ten minutes "
    "to the station matter less than sleeping well. Take the one near the station if you commute every day."
)


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    from services.router.config import EmbedderSource
    from services.router.embedder import locate_embedder

    return AutoTokenizer.from_pretrained(str(locate_embedder(EmbedderSource())))


def long_conversation(turns: int) -> str:
    history = []
    for index in range(turns):
        history.append(f"Human: Here is flat number {index}: two rooms, a small kitchen, a balcony facing the yard, "
                       f"and a landlord who answers emails within a day. What do you think of it?")
        history.append(f"Assistant: Flat {index} sounds reasonable; check the heating costs and the notice period.")
    return "\n\n".join([*history, FINAL_TURN])


def test_oldest_turns_go_first_and_the_final_exchange_stays_whole(tokenizer: Any) -> None:
    prompt = long_conversation(8)
    assert token_counts(tokenizer, [prompt])[0] > MAX_LENGTH, "the conversation must not fit for this test to mean anything"
    [fitted] = fit_prompts(tokenizer, [prompt], [LONG_ANSWER], MAX_LENGTH)
    kept = split_turns(fitted.text)
    assert kept[-1] == FINAL_TURN, "the final request is kept whole"
    assert kept == split_turns(prompt)[-len(kept):], "what is kept is the newest turns, in order, unchanged"
    assert fitted.dropped_turns == len(split_turns(prompt)) - len(kept) > 0 and not fitted.final_turn_cut
    used = token_counts(tokenizer, [fitted.text, LONG_ANSWER])
    assert sum(used) <= MAX_LENGTH - SPECIAL_TOKENS, "prompt and the longer response fit the window together"


def test_both_responses_of_a_pair_are_read_after_the_same_context(tokenizer: Any) -> None:
    prompt = long_conversation(8)
    chosen, rejected = fit_prompts(tokenizer, [prompt, prompt], [LONG_ANSWER, SHORT_ANSWER], MAX_LENGTH)
    assert chosen == rejected, "one cut per prompt, decided by the longer response"

    batch = encode_pairs(tokenizer, [chosen.text, rejected.text], [LONG_ANSWER, SHORT_ANSWER], MAX_LENGTH)
    prompt_ids = [
        [token for token, segment, real in zip(ids, segments, mask) if segment == 0 and real]
        for ids, segments, mask in zip(batch["input_ids"].tolist(), batch["token_type_ids"].tolist(), batch["attention_mask"].tolist())
    ]
    assert prompt_ids[0] == prompt_ids[1], "the encoder sees the same prompt tokens beside either response"
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    answer_ids = tokenizer(LONG_ANSWER, add_special_tokens=False)["input_ids"]
    assert lengths[0] == len(prompt_ids[0]) + len(answer_ids) + 1, "the long response is whole, not cut at its end"


def test_a_prompt_that_fits_is_left_alone(tokenizer: Any) -> None:
    prompt = "Human: Hi!\n\nAssistant: Hello.\n\nHuman: What is the capital of France?"
    [fitted] = fit_prompts(tokenizer, [prompt], ["Paris."], MAX_LENGTH)
    assert fitted.text == prompt and not fitted.truncated


def test_a_final_turn_longer_than_the_window_keeps_its_start_and_end(tokenizer: Any) -> None:
    pasted = " ".join(f"Paragraph {index} of the contract says the tenant pays for repairs." for index in range(60))
    prompt = f"Human: Hello\n\nAssistant: Hi.\n\nHuman: My landlord sent this: {pasted} Is that legal where I live?"
    [fitted] = fit_prompts(tokenizer, [prompt], [SHORT_ANSWER], MAX_LENGTH)
    assert fitted.final_turn_cut and fitted.dropped_turns == 2
    assert fitted.text.startswith("human : my landlord sent this") and fitted.text.endswith("is that legal where i live?")
    assert ELISION.strip() in fitted.text
    assert token_counts(tokenizer, [fitted.text])[0] <= MAX_LENGTH - SPECIAL_TOKENS - token_counts(tokenizer, [SHORT_ANSWER])[0]
