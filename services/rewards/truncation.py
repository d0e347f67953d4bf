"""Fitting a long conversation into the reward encoder's window, the same way for every response.

The encoder reads ``[CLS] prompt [SEP] response [SEP]`` in ``max_length`` tokens, and
multi-turn transcripts routinely need more. What is judged is the response to the last
request, so the **final exchange** (the last turn of the prompt and the response) is kept
whole and whole turns are dropped from the **oldest** end of the prompt until it fits.

The cut is decided once per prompt, against the longest of the responses it is compared with,
so the chosen and the rejected response of a pair (or the experts' answers in a shadow
evaluation) are read after exactly the same context: a pair must differ only in its responses,
never in how much of the conversation survived. Only when the final turn alone does not fit is
it cut inside, keeping its start and its end (a pasted text's middle is what goes); a response
longer than the window is cut at its end by the tokenizer.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any, Sequence

from services.rewards.spec import NEWLINE_MARKER

SPECIAL_TOKENS = 3  # [CLS] prompt [SEP] response [SEP]
MIN_PROMPT_SHARE = 0.25  # of the window: the prompt keeps at least this much beside a very long response
ELISION = " … "
# A turn starts where a speaker label opens a line: HH transcripts ("Human:", "Assistant:") and
# the service's own transcripts ("User:", "Assistant:", "System:").
TURN_START = re.compile(r"\n+(?=(?:Human|User|Assistant|System):)")


def visible_layout(text: str) -> str:
    """The text with every line break written as a ``¶`` token the encoder can see."""
    return text.replace("\r\n", "\n").replace("\n", f" {NEWLINE_MARKER} ")


@dataclass(frozen=True)
class FittedPrompt:
    text: str
    dropped_turns: int  # whole turns taken from the oldest end
    final_turn_cut: bool  # the last turn itself did not fit and lost its middle

    @property
    def truncated(self) -> bool:
        return self.dropped_turns > 0 or self.final_turn_cut


def split_turns(prompt: str) -> list[str]:
    """The prompt's turns, oldest first; a prompt without speaker labels is one turn."""
    return [turn for turn in TURN_START.split(prompt.strip()) if turn.strip()] or [prompt]


def token_counts(tokenizer: Any, texts: Sequence[str]) -> list[int]:
    """Tokens of each text as the encoder reads it (line breaks as ``¶``), without special tokens."""
    if not texts:
        return []
    encoded = tokenizer([visible_layout(text) for text in texts], add_special_tokens=False, verbose=False)["input_ids"]
    return [len(ids) for ids in encoded]


def prompt_budget(max_length: int, longest_response_tokens: int) -> int:
    """Tokens left for the prompt beside the longest response (at least a quarter of the window)."""
    window = max_length - SPECIAL_TOKENS
    return max(int(window * MIN_PROMPT_SHARE), window - longest_response_tokens)


def fit_prompt(tokenizer: Any, prompt: str, response_tokens: int, max_length: int) -> FittedPrompt:
    """``prompt`` cut to fit beside a response of ``response_tokens`` tokens (see the module docstring)."""
    budget = prompt_budget(max_length, response_tokens)
    if token_counts(tokenizer, [prompt])[0] <= budget:
        return FittedPrompt(prompt, 0, False)
    turns = split_turns(prompt)
    counts = token_counts(tokenizer, turns)  # kept turns are joined by one line break: one ¶ token each
    kept, used = 0, 0
    for count in reversed(counts):
        if used + count + (1 if kept else 0) > budget:
            break
        used += count + (1 if kept else 0)
        kept += 1
    if kept:
        return FittedPrompt("\n".join(turns[-kept:]), len(turns) - kept, False)
    return FittedPrompt(_elide_middle(tokenizer, turns[-1], budget), len(turns) - 1, True)


def _elide_middle(tokenizer: Any, text: str, budget: int) -> str:
    """The start and the end of ``text`` in ``budget`` tokens, joined by an ellipsis."""
    ids = tokenizer(visible_layout(text), add_special_tokens=False, verbose=False)["input_ids"]
    room = max(2, budget - 1)  # the ellipsis is one token
    head, tail = ids[: room - room // 2], ids[len(ids) - room // 2 :]
    return tokenizer.decode(head) + ELISION + tokenizer.decode(tail)


def fit_prompts(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], max_length: int) -> list[FittedPrompt]:
    """Each row's prompt, cut once per distinct prompt against the longest of its responses, so
    every response to one prompt is read with the same context."""
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    longest: dict[str, int] = {}
    for prompt, count in zip(prompts, token_counts(tokenizer, list(responses))):
        longest[prompt] = max(longest.get(prompt, 0), count)
    fitted = {prompt: fit_prompt(tokenizer, prompt, count, max_length) for prompt, count in longest.items()}
    return [fitted[prompt] for prompt in prompts]
