"""Per-row text assembly with the real SmolLM2 tokenizer: stop strings, EOS, budgets, UTF-8."""

from __future__ import annotations

from typing import Any

from services.experts.decoding import TextAssembler


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
