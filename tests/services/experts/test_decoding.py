"""Per-row text assembly with the real SmolLM2 tokenizer: stop strings, EOS, budgets, UTF-8; and
token choice at the edges of the sampling parameters."""

from __future__ import annotations

from typing import Any

import pytest
import numpy as np

from services.experts.decoding import DecodingRow, TextAssembler, choose_tokens
from services.experts.generation import GenerationRequest, PromptMessage


def feed(tokenizer: Any, text: str, stops: tuple[str, ...] = (), budget: int = 100, eos: bool = False):
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    if eos:
        ids = ids + [tokenizer.eos_token_id]
    assembler = TextAssembler(tokenizer, frozenset({tokenizer.eos_token_id}), stops, budget)
    deltas: list[str] = []
    for token in ids:
        delta, finish = assembler.add(token)
        deltas.append(delta)
        if finish is not None:
            return "".join(deltas), finish, deltas, assembler.generated_tokens
    return "".join(deltas), None, deltas, assembler.generated_tokens


def test_stop_string_cuts_the_text_and_is_never_streamed(tokenizer: Any) -> None:
    text, finish, deltas, _ = feed(tokenizer, "one, two, three, four, five", stops=(", four",))
    assert (text, finish) == ("one, two, three", "stop")
    assert all("four" not in delta for delta in deltas)


def test_stop_string_split_across_tokens_is_found(tokenizer: Any) -> None:
    text, finish, _, _ = feed(tokenizer, "The answer is forty-two, clearly.", stops=("forty-two",))
    assert (text, finish) == ("The answer is ", "stop")


def test_held_back_text_is_released_at_eos(tokenizer: Any) -> None:
    text, finish, _, tokens = feed(tokenizer, "Paris is the capital", stops=("#####",), eos=True)
    assert (text, finish) == ("Paris is the capital", "stop")
    assert tokens == len(tokenizer("Paris is the capital", add_special_tokens=False)["input_ids"]) + 1


def test_budget_ends_with_length(tokenizer: Any) -> None:
    text, finish, _, tokens = feed(tokenizer, "a b c d e f g h i j", budget=4)
    assert finish == "length" and tokens == 4
    assert text == tokenizer.decode(tokenizer("a b c d e f g h i j", add_special_tokens=False)["input_ids"][:4])


def test_multibyte_characters_are_never_split(tokenizer: Any) -> None:
    sample = "Grüße aus Köln 🌍 und 日本"
    text, finish, deltas, _ = feed(tokenizer, sample, eos=True)
    assert text == sample and finish == "stop"
    assert not any("\ufffd" in delta for delta in deltas)


def sampled_row(tokenizer: Any, temperature: float, top_p: float = 1.0, seed: int = 7) -> DecodingRow:
    """A row that samples (temperature > 0), as the engine builds one."""
    request = GenerationRequest(
        expert="smollm2", messages=(PromptMessage(role="user", content="hi"),), max_tokens=4, max_tokens_explicit=True,
        temperature=temperature, top_p=top_p, seed=seed,
    )
    assembler = TextAssembler(tokenizer, frozenset({tokenizer.eos_token_id}), (), request.max_tokens)
    return DecodingRow(request=request, prompt_ids=[1], adapter=None, assembler=assembler, emit=lambda event: None,
                       generator=np.random.default_rng(seed))


@pytest.mark.parametrize("temperature", [1.175494351e-38, 5e-324, 1e-300, 1e-6])
def test_a_tiny_temperature_samples_the_most_likely_token_instead_of_failing(tokenizer: Any, temperature: float) -> None:
    """Any temperature the API accepts (0 < t <= 2) decodes: dividing the logits by a tiny one
    must not overflow to inf and NaN, which would fail every request sharing the batch."""
    logits = np.array([[1.0, 7.5, -3.0, 7.25, 0.0], [2.0, 1.0, 0.0, 9.0, 3.0]], dtype=np.float32)
    rows = [sampled_row(tokenizer, temperature), sampled_row(tokenizer, 0.7, top_p=1e-9)]
    tokens = choose_tokens(rows, logits)
    assert tokens[0] == 1  # the arg-max, as the temperature tends to 0
    assert tokens[1] == 3  # a vanishing top-p keeps the most likely token only
