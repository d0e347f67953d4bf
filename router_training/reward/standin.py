"""A stand-in for public HH-style preference data, generated from hand-written scenarios.

``coe train reward`` accepts Anthropic-HH-style rows: ``{"chosen", "rejected"}``, each a whole
dialogue of ``\\n\\nHuman:`` / ``\\n\\nAssistant:`` turns, the two identical up to the final
Assistant turn. Public sets in that shape cannot be downloaded here and must not be trained on, yet
the pipeline has to be exercised on data with their size, their shape and their faults. This module
writes such data from the scenarios in ``router_training/data/reward/standin_scenarios.json``:
everyday requests (``harmless``) and requests an assistant should decline (``harmful``), each with
openings, intermediate exchanges, and the sentences of good and bad final answers.

What makes it closer to real data than to a clean benchmark:

- **Dialogue shape.** 0-5 earlier exchanges before the final turn, weighted towards few
  (``CONTEXT_COUNT_WEIGHTS``); now and then an unrelated earlier topic from another scenario of the
  same split (``DRIFT_RATE``). ``long_share`` of the rows (25 %) run past ``LONG_PROMPT_CHARS``
  characters before the final turn: a pasted multi-topic text (a newsletter or blog draft, a saved-up
  list of questions, a message log) or many turns.
- **Pair types** are drawn per row (``HARMLESS_PAIR_WEIGHTS``, ``HARMFUL_PAIR_WEIGHTS``): good
  against bad, evasive, needlessly refusing, off-topic, curt or rude answers; a refusal with a safe
  alternative against a complicit one, a bare refusal or a judgmental one. Some pairs are hard (a
  long good answer against one good sentence; a helpful refusal against a bare one).
- **Label noise.** ``label_noise`` (12 %) of the valid rows have chosen and rejected swapped, as
  annotators disagree.
- **Faults** a loader must refuse, at exact per-file rates (rounded counts at seeded lines):
  an empty final reply on one side (3 %); transcripts that differ before the final turn (3 %: a
  word changed, a trailing space inside an earlier turn, a double-posted message); a side with no
  Assistant turn at all (0.5 %: the bare reply, or another speaker label); final replies that are
  the same text (0.5 %). Every line is still a valid JSON object.

About a fifth of the scenarios of each kind appear only in the held-out file, so held-out scores
measure generalisation to unseen topics; pasted text and off-topic answers come from the row's own
split. Every random choice comes from a ``random.Random`` seeded by (seed, split, purpose, row), so
the files are byte-for-byte reproducible: ``python -m router_training.reward.standin --out DIR``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import random
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal, Sequence, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router_training.jsonl import DataError
from router_training.router.data import write_jsonl_atomic

__all__ = [
    "SCENARIOS_PATH", "Scenario", "StandinSettings", "load_scenarios", "split_scenarios", "generate", "write_standin"
]

SCENARIOS_PATH = Path(__file__).resolve().parent.parent / "data" / "reward" / "standin_scenarios.json"
SPLIT_FILES = {"train": "train.jsonl", "heldout": "heldout.jsonl"}
SUMMARY_FILE = "standin.json"
HUMAN = "Human"
ASSISTANT = "Assistant"
TURN_MARKERS = ("Human:", "Assistant:")

HELDOUT_FRACTION = 0.2  # of each kind's scenarios
LONG_PROMPT_CHARS = 1500  # "long": more characters than this before the final Assistant turn
LONG_TARGET_CHARS = 1600  # long rows are built past this, so they clear the threshold with a margin
LONG_EXTRA_CHARS = 1400  # ... plus up to this many more, so long rows vary in length
CONTEXT_COUNT_WEIGHTS = (0.30, 0.27, 0.19, 0.12, 0.07, 0.05)  # 0, 1, ..., 5 earlier exchanges
DRIFT_RATE = 0.08  # of rows with earlier exchanges: one of them is an unrelated earlier topic
LONG_BY_PASTE = 0.7  # of long rows; the rest are long by many turns (topped up by a paste if short)
LIST_RATE = 0.15  # of multi-sentence answers written as a bulleted or numbered list
LEAD_IN_RATE = 0.3  # of the other answers opening with a short lead-in
REFUSAL_OPENER_RATE = 0.7  # of good refusals opening with an explicit "I can't help with that"

HARMLESS_PAIR_WEIGHTS = {
    "good_vs_bad": 0.30,
    "good_vs_evasive": 0.14,
    "good_vs_refusal": 0.12,
    "good_vs_off_topic": 0.14,
    "long_vs_short": 0.15,
    "good_vs_rude": 0.15,
}
HARMFUL_PAIR_WEIGHTS = {
    "refusal_vs_complicit": 0.40,
    "alternative_vs_bare_refusal": 0.25,
    "bare_refusal_vs_complicit": 0.20,
    "refusal_vs_judgmental": 0.15,
}
# Named as the reward loader names its refusals (DataError.reason), so the two reports line up.
FAULT_KINDS = ("empty_response", "different_prompts", "no_assistant_turn", "same_responses")

LEAD_INS = ("Sure.", "Good question.", "Happy to help.", "Of course.", "Sure thing.", "Okay.", "Right.")
LIST_HEADERS = ("Here's what I'd suggest:", "A few things that help:", "Some pointers:", "Here's the short version:")
EVASIVE = (
    "I'm not sure, you could look it up online.",
    "Why do you want to know?",
    "Hmm, that's a tough one. What do you think?",
    "It really depends.",
    "There are a lot of different opinions on that.",
    "I don't really know much about that, sorry.",
    "Have you tried asking someone else?",
    "Maybe. Hard to say.",
    "What have you tried so far?",
    "That's an interesting question. Can you tell me more?",
    "I guess it depends on the situation.",
)
NEEDLESS_REFUSALS = (
    "I'm sorry, but I can't help with that request.",
    "I'm not able to give advice on this topic.",
    "That's outside what I can help with, sorry.",
    "I'd rather not answer that. You should consult a professional.",
    "I'm afraid I can't provide that information.",
    "Sorry, I don't feel comfortable answering this.",
    "I can't assist with that, as it could be risky.",
)
RUDE = (
    "Seriously? Just google it.",
    "That's a pretty basic question.",
    "Figure it out yourself.",
    "Honestly, this isn't hard.",
    "Not my problem, sorry.",
    "You should already know this.",
    "Ugh, fine. Just try harder.",
    "Why are you asking me this?",
    "Everyone knows that. Come on.",
)
REFUSAL_OPENERS = (
    "I can't help with that.",
    "I'm not going to help with this one.",
    "I won't help with that, but I don't want to leave you stuck either.",
    "That's not something I can help with.",
    "I can't help you do that.",
    "I'm not able to help with that part.",
)
BARE_REFUSALS = (
    "I can't help with that.",
    "Sorry, I can't assist with that request.",
    "No.",
    "I won't help with that.",
    "That's not something I can do.",
    "I'm sorry, but I can't help with this.",
    "Sorry, that's against my guidelines.",
)
JUDGMENTAL = (
    "What is wrong with you? Nobody decent would even ask that.",
    "That's disgusting. You should be ashamed of yourself.",
    "Wow. You're a terrible person for even thinking about this.",
    "I'm not talking to someone like you.",
    "Absolutely not, and frankly people like you are the problem.",
    "Go away.",
    "Unbelievable. Don't ask me things like this.",
)
DRIFT_TRANSITIONS = ("", "", "Thanks. Different question: ", "OK, thanks. Also, ", "Got it. ", "Thanks! Another thing. ")
PASTE_FORMS = {
    # Multi-topic texts, so that a paste of several other scenarios' sentences reads as one document.
    "draft": (
        (
            "I'm putting together a newsletter for our residents' group. Here's the draft so far, sorry it's long:",
            "I'm writing a 'things I wish I'd known' post for my blog. Here's my draft:",
            "My dad printed this list of tips off the internet and stuck it on the fridge:",
            "Someone posted this in our community Facebook group and everyone's sharing it:",
            "Here's my draft of a handout for the adult learning class I volunteer at:",
        ),
        ("Anyway, separate question: ", "Anyway, that's not why I'm here. ", "Unrelated to that: ", ""),
        (
            "P.S. Could you look over this later? It's for our residents' newsletter:",
            "Also, unrelated, here's a blog draft I'd love feedback on at some point:",
        ),
    ),
    "questions": (
        (
            "I've been saving up a list of questions for you:",
            "Some things I keep meaning to ask, in no particular order:",
            "My list of random questions from this week:",
        ),
        ("But first, the one that's actually urgent: ", "We'll get to those, but first: ", "Start with this one though: "),
        ("After that, I have a few more:", "And then, when you have a minute, these ones:"),
    ),
    "messages": (
        (
            "Copying in the messages I sent my sister this week so you know what my week's been like:",
            "Some background first, here are my notes from the last few weeks:",
            "Sorry, context first. This is what I've been writing in my journal:",
        ),
        ("Anyway, my actual question: ", "Anyway, sorry for the wall of text. ", "OK, so here's the thing. ", "So yeah. "),
        ("Some context, in case it helps. These are my notes from the last few weeks:",),
    ),
}  # form: (intros before the paste, bridges from the paste to the question, lead-ins after the question)
DOUBLE_POST_NOTES = ("", "hello?", "?", "sorry, sent twice")

Turn = tuple[str, str]  # (speaker, text)
T = TypeVar("T")


class Exchange(BaseModel):
    """An intermediate exchange: the assistant's reply to the opening, then the human's follow-up."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    assistant: str = Field(min_length=1)
    human: str = Field(min_length=1)


class Scenario(BaseModel):
    """One topic: enough openings, exchanges and sentences to yield many different dialogues."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(pattern=r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
    kind: Literal["harmless", "harmful"]
    openings: tuple[str, ...] = Field(min_length=4)
    context: tuple[Exchange, ...] = Field(min_length=3)
    good: tuple[str, ...] = Field(min_length=6)
    bad: tuple[str, ...] = Field(min_length=5)

    @model_validator(mode="after")
    def _usable_texts(self) -> "Scenario":
        texts = [*self.openings, *self.good, *self.bad]
        texts += [text for exchange in self.context for text in (exchange.assistant, exchange.human)]
        for text in texts:
            if not text.strip():
                raise ValueError("a text is empty")
            if any(marker in text for marker in TURN_MARKERS):
                raise ValueError(f"{text[:40]!r}... contains a turn marker, which would split the dialogue")
        for field in ("openings", "good", "bad"):
            values = getattr(self, field)
            if len(set(values)) != len(values):
                raise ValueError(f"'{field}' repeats a text")
        return self


@dataclass(frozen=True)
class StandinSettings:
    """Sizes, seed and fault rates. The defaults give a little over 2,000 valid pairs."""

    train_pairs: int = 1650  # rows written, faults included
    heldout_pairs: int = 550
    seed: int = 0
    label_noise: float = 0.12
    empty_reply_rate: float = 0.03
    differing_prompt_rate: float = 0.03
    no_assistant_rate: float = 0.005
    identical_reply_rate: float = 0.005
    long_share: float = 0.25

    def __post_init__(self) -> None:
        if self.train_pairs < 0 or self.heldout_pairs < 0:
            raise ValueError("train_pairs and heldout_pairs must be >= 0")
        rates = {"label_noise": self.label_noise, "long_share": self.long_share, **self.fault_rates}
        for name, rate in rates.items():
            if not 0.0 <= rate <= 1.0:
                raise ValueError(f"{name} must be within [0, 1], got {rate}")
        if sum(self.fault_rates.values()) > 1.0:
            raise ValueError("the fault rates add up to more than 1")

    @property
    def fault_rates(self) -> dict[str, float]:
        """Rate per fault kind, keyed as in ``FAULT_KINDS``."""
        return {
            "empty_response": self.empty_reply_rate,
            "different_prompts": self.differing_prompt_rate,
            "no_assistant_turn": self.no_assistant_rate,
            "same_responses": self.identical_reply_rate,
        }


@dataclass(frozen=True)
class Pair:
    """A dialogue before its final turn and the two final replies, best first."""

    turns: tuple[Turn, ...]
    chosen: str
    rejected: str
    pair_type: str


@dataclass(frozen=True)
class SplitOutput:
    rows: list[dict[str, str]]
    summary: dict[str, Any]


# --- scenarios ------------------------------------------------------------------------------


def load_scenarios(path: Path = SCENARIOS_PATH) -> list[Scenario]:
    """The validated scenarios; a bad one is a :class:`DataError` naming it and the problem."""
    path = Path(path)
    try:
        document = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        raise DataError(f"{path}: cannot read the scenarios ({exc})") from exc
    raw = document.get("scenarios") if isinstance(document, dict) else None
    if not isinstance(raw, list):
        raise DataError(f"{path}: expected an object with a 'scenarios' list")
    scenarios, seen = [], set()
    for index, item in enumerate(raw):
        name = item.get("id") if isinstance(item, dict) and isinstance(item.get("id"), str) else f"#{index + 1}"
        try:
            scenario = Scenario.model_validate(item)
        except ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(part) for part in error["loc"]) or "scenario"
            raise DataError(f"{path}: scenario {name!r}: {where}: {error['msg']}") from exc
        if scenario.id in seen:
            raise DataError(f"{path}: scenario {name!r} appears twice; ids must be unique")
        seen.add(scenario.id)
        scenarios.append(scenario)
    for kind in ("harmless", "harmful"):
        if sum(scenario.kind == kind for scenario in scenarios) < 2:
            raise DataError(f"{path}: needs at least two {kind} scenarios, one for each split")
    return scenarios


def split_scenarios(scenarios: Sequence[Scenario], seed: int) -> tuple[list[Scenario], list[Scenario]]:
    """``(train, heldout)``: a seeded fifth of each kind is held out, so held-out topics are unseen."""
    heldout: set[str] = set()
    for kind in ("harmless", "harmful"):
        ids = sorted(scenario.id for scenario in scenarios if scenario.kind == kind)
        random.Random(f"{seed}:split:{kind}").shuffle(ids)
        count = min(len(ids) - 1, max(1, round(len(ids) * HELDOUT_FRACTION)))
        heldout.update(ids[:count])
    ordered = sorted(scenarios, key=lambda scenario: scenario.id)
    return [s for s in ordered if s.id not in heldout], [s for s in ordered if s.id in heldout]


# --- answers --------------------------------------------------------------------------------


def _pick(rng: random.Random, pool: Sequence[str], low: int, high: int) -> list[str]:
    return rng.sample(list(pool), min(len(pool), rng.randint(low, high)))


def _compose(sentences: Sequence[str], rng: random.Random) -> str:
    """Sentences as a reply: plain prose, prose after a short lead-in, or a short list.

    Good and bad answers get the same styles at the same rates, so style says nothing about the label.
    """
    roll = rng.random()
    if len(sentences) >= 3 and roll < LIST_RATE:
        numbered = rng.random() < 0.5
        lines = [f"{index}. {text}" if numbered else f"- {text}" for index, text in enumerate(sentences, 1)]
        header = [rng.choice(LIST_HEADERS)] if rng.random() < 0.6 else []
        return "\n".join([*header, *lines])
    if roll < LIST_RATE + LEAD_IN_RATE:
        return " ".join([rng.choice(LEAD_INS), *sentences])
    return " ".join(sentences)


def _generic(rng: random.Random, pool: Sequence[str]) -> str:
    """One or two lines of a generic pool: the replies that fit any request equally badly."""
    return " ".join(_pick(rng, pool, 1, 2) if rng.random() < 0.3 else [rng.choice(pool)])


def _good(scenario: Scenario, rng: random.Random, low: int = 2, high: int = 5) -> str:
    """The answer a careful assistant gives: help for a harmless request, a helpful refusal otherwise."""
    if scenario.kind == "harmful":
        return _refusal(scenario, rng, low, high)
    return _compose(_pick(rng, scenario.good, low, high), rng)


def _in_order(items: Sequence[T], count: int, rng: random.Random) -> list[T]:
    """``count`` of ``items``, kept in their written order: the order a conversation or argument runs in."""
    return [items[index] for index in sorted(rng.sample(range(len(items)), min(count, len(items))))]


def _refusal(scenario: Scenario, rng: random.Random, low: int = 2, high: int = 4) -> str:
    """A refusal that says why, then what to do instead: the scenario's sentences in written order."""
    body = " ".join(_in_order(scenario.good, rng.randint(max(2, low), min(4, high)), rng))
    return f"{rng.choice(REFUSAL_OPENERS)} {body}" if rng.random() < REFUSAL_OPENER_RATE else body


def _complicit(scenario: Scenario, rng: random.Random) -> str:
    return " ".join(_pick(rng, scenario.bad, 2, 4))


def _other(scenario: Scenario, pool: Sequence[Scenario], rng: random.Random) -> Scenario:
    """Another scenario of the split, of the same kind where there is one."""
    same_kind = [other for other in pool if other.id != scenario.id and other.kind == scenario.kind]
    return rng.choice(same_kind or [other for other in pool if other.id != scenario.id])


def _replies(scenario: Scenario, pool: Sequence[Scenario], rng: random.Random) -> tuple[str, str, str]:
    """``(pair type, chosen, rejected)`` for the final turn."""
    weights = HARMLESS_PAIR_WEIGHTS if scenario.kind == "harmless" else HARMFUL_PAIR_WEIGHTS
    pair_type = rng.choices(list(weights), weights=list(weights.values()))[0]
    if pair_type == "good_vs_bad":
        return pair_type, _good(scenario, rng), _compose(_pick(rng, scenario.bad, 2, 4), rng)
    if pair_type == "good_vs_evasive":
        return pair_type, _good(scenario, rng), _generic(rng, EVASIVE)
    if pair_type == "good_vs_refusal":
        return pair_type, _good(scenario, rng), _generic(rng, NEEDLESS_REFUSALS)
    if pair_type == "good_vs_off_topic":
        return pair_type, _good(scenario, rng), _good(_other(scenario, pool, rng), rng, 2, 4)
    if pair_type == "long_vs_short":
        return pair_type, _good(scenario, rng, 3, 5), rng.choice(scenario.good)
    if pair_type == "good_vs_rude":
        return pair_type, _good(scenario, rng), _generic(rng, RUDE)
    if pair_type == "refusal_vs_complicit":
        return pair_type, _refusal(scenario, rng), _complicit(scenario, rng)
    if pair_type == "alternative_vs_bare_refusal":
        return pair_type, _refusal(scenario, rng), rng.choice(BARE_REFUSALS)
    if pair_type == "bare_refusal_vs_complicit":
        return pair_type, rng.choice(BARE_REFUSALS), _complicit(scenario, rng)
    return pair_type, _refusal(scenario, rng), _generic(rng, JUDGMENTAL)


# --- dialogues ------------------------------------------------------------------------------


def render(turns: Sequence[Turn], reply: str | None) -> str:
    """HH text: every turn as ``\\n\\nSpeaker: text``; ``reply`` ends it as the final Assistant turn."""
    text = "".join(f"\n\n{speaker}: {body}" for speaker, body in turns)
    if reply is None:
        return text
    return f"{text}\n\n{ASSISTANT}: {reply}" if reply else f"{text}\n\n{ASSISTANT}:"


def _drift(scenario: Scenario, pool: Sequence[Scenario], rng: random.Random, count: int) -> list[Turn]:
    """Earlier, unrelated exchanges: another topic asked and answered before this one."""
    others = [other for other in pool if other.id != scenario.id]
    turns: list[Turn] = []
    for other in rng.sample(others, min(count, len(others))):
        turns += [(HUMAN, rng.choice(other.openings)), (ASSISTANT, _good(other, rng, 2, 3))]
    return turns


def _paste_pieces(donor: Scenario, form: str, rng: random.Random) -> list[str]:
    """A donor scenario's coherent pieces for ``form``, none repeating another's text."""
    if form == "draft":
        half = len(donor.good) // 2
        return [" ".join(donor.good[:half]), " ".join(donor.good[half:])]
    openings = rng.sample(list(donor.openings), len(donor.openings))
    if form == "questions":
        return [f"- {opening}" for opening in openings]
    humans = [exchange.human for exchange in donor.context]
    return ["\n".join(lines) for lines in zip(openings, humans)]


def _paste(scenario: Scenario, pool: Sequence[Scenario], rng: random.Random, chars: int) -> tuple[str, str]:
    """``(form, text)``: a pasted block of about ``chars`` characters from the split's other scenarios.

    Pieces are whole paragraphs of one donor's good sentences (in written order), or its questions,
    or a few of its human lines, so the paste reads as one multi-topic document; harmful donors are
    drawn on only when the harmless ones run out.
    """
    form = rng.choice(sorted(PASTE_FORMS))
    pieces: list[str] = []
    for kind in ("harmless", "harmful"):
        donors = [other for other in pool if other.id != scenario.id and other.kind == kind]
        batch = [piece for donor in donors for piece in _paste_pieces(donor, form, rng)]
        pieces += rng.sample(batch, len(batch))
    taken: list[str] = []
    while pieces and (len(taken) < 3 or sum(len(piece) + 2 for piece in taken) < chars):
        taken.append(pieces.pop(0))
    return form, ("\n" if form == "questions" else "\n\n").join(taken)


def _with_paste(opening: str, form: str, text: str, rng: random.Random) -> str:
    intros, bridges, afters = PASTE_FORMS[form]
    if rng.random() < 0.3:
        return f"{opening}\n\n{rng.choice(afters)}\n\n{text}"
    return f"{rng.choice(intros)}\n\n{text}\n\n{rng.choice(bridges)}{opening}"


def _pair(scenario: Scenario, pool: Sequence[Scenario], rng: random.Random, long: bool) -> Pair:
    """One dialogue: earlier exchanges, the final Human turn, and two candidate final replies."""
    by_paste = long and rng.random() < LONG_BY_PASTE
    count = 5 if long and not by_paste else rng.choices(range(len(CONTEXT_COUNT_WEIGHTS)), CONTEXT_COUNT_WEIGHTS)[0]
    own = _in_order(scenario.context, count, rng)
    drift = count - len(own)
    if count and not drift and rng.random() < DRIFT_RATE:
        drift, own = 1, own[1:]
    earlier = _drift(scenario, pool, rng, drift)
    opening = rng.choice(scenario.openings)
    if earlier:
        opening = rng.choice(DRIFT_TRANSITIONS) + opening
    own_turns = [turn for exchange in own for turn in ((ASSISTANT, exchange.assistant), (HUMAN, exchange.human))]
    turns = [*earlier, (HUMAN, opening), *own_turns]
    if long:
        missing = LONG_TARGET_CHARS - len(render(turns, None))
        if by_paste or missing > 0:
            form, text = _paste(scenario, pool, rng, max(missing, 0) + rng.randint(0, LONG_EXTRA_CHARS))
            turns[len(earlier)] = (HUMAN, _with_paste(opening, form, text, rng))
    pair_type, chosen, rejected = _replies(scenario, pool, rng)
    return Pair(tuple(turns), chosen, rejected, pair_type)


# --- faults ---------------------------------------------------------------------------------


def _change_word(text: str, rng: random.Random) -> str | None:
    """``text`` with one word dropped, doubled or misspelt, as a re-typed message would differ."""
    words = text.split(" ")
    candidates = [index for index, word in enumerate(words) if len(word) >= 4 and word.isalpha()]
    if not candidates:
        return None
    index = rng.choice(candidates)
    word = words[index]
    edit = rng.choice(("drop", "double", "typo"))
    if edit == "drop":
        changed = words[:index] + words[index + 1 :]
    elif edit == "double":
        changed = words[: index + 1] + [word] + words[index + 1 :]
    else:
        cut = rng.randint(1, len(word) - 3)
        changed = [*words[:index], word[:cut] + word[cut + 1] + word[cut] + word[cut + 2 :], *words[index + 1 :]]
    result = " ".join(changed)
    return result if result != text else None


def _differing_prompt(turns: tuple[Turn, ...], rng: random.Random) -> tuple[Turn, ...]:
    """A copy of ``turns`` whose text before the final Assistant turn differs, even after stripping."""
    humans = [index for index, (speaker, _) in enumerate(turns) if speaker == HUMAN]
    variant = rng.choice(("word", "word", "space", "double_post"))
    changed = list(turns)
    if variant == "word":
        index = rng.choice(humans)
        edited = _change_word(turns[index][1], rng)
        if edited is not None:
            changed[index] = (HUMAN, edited)
            return tuple(changed)
    if variant == "space" and len(turns) > 1:
        index = rng.choice([index for index in range(len(turns) - 1) if turns[index][0] == HUMAN])
        changed[index] = (HUMAN, turns[index][1] + " ")
        return tuple(changed)
    note = rng.choice(DOUBLE_POST_NOTES)
    return (*turns, (HUMAN, note or turns[-1][1]))


def _faulty(pair: Pair, fault: str, rng: random.Random) -> dict[str, str]:
    """The row of ``pair`` with ``fault`` on one side (or, for identical replies, both)."""
    chosen, rejected = render(pair.turns, pair.chosen), render(pair.turns, pair.rejected)
    side = rng.choice(("chosen", "rejected"))
    reply = pair.chosen if side == "chosen" else pair.rejected
    if fault == "empty_response":
        broken = render(pair.turns, "")
    elif fault == "different_prompts":
        broken = render(_differing_prompt(pair.turns, rng), reply)
    elif fault == "no_assistant_turn":
        broken = reply if rng.random() < 0.5 else render(pair.turns, reply).replace(f"\n\n{ASSISTANT}:", "\n\nAI:")
    else:
        broken = render(pair.turns, pair.chosen + rng.choice(("", "", " ", "\n")))
        side = "rejected"
    return {"chosen": broken, "rejected": rejected} if side == "chosen" else {"chosen": chosen, "rejected": broken}


# --- files ----------------------------------------------------------------------------------


def _positions(count: int, total: int, rng: random.Random) -> list[int]:
    return sorted(rng.sample(range(total), min(count, total)))


def _fault_plan(rows: int, settings: StandinSettings, rng: random.Random) -> dict[int, str]:
    """Row index -> fault kind, at the exact rounded rate of each kind, on distinct rows."""
    counts = {kind: round(rate * rows) for kind, rate in settings.fault_rates.items()}
    indices = rng.sample(range(rows), min(rows, sum(counts.values())))
    plan, start = {}, 0
    for kind in FAULT_KINDS:
        for index in indices[start : start + counts[kind]]:
            plan[index] = kind
        start += counts[kind]
    return plan


def _lines(faults: dict[int, str], kind: str) -> dict[str, Any]:
    lines = [index + 1 for index in sorted(faults) if faults[index] == kind]
    return {"count": len(lines), "lines": lines}


def _split_rows(name: str, rows: int, pool: Sequence[Scenario], settings: StandinSettings) -> SplitOutput:
    seed = settings.seed
    ids = sorted(scenario.id for scenario in pool)
    order = (ids * math.ceil(rows / len(ids)))[:rows] if rows else []
    random.Random(f"{seed}:{name}:scenarios").shuffle(order)
    by_id = {scenario.id: scenario for scenario in pool}
    faults = _fault_plan(rows, settings, random.Random(f"{seed}:{name}:faults"))
    valid = [index for index in range(rows) if index not in faults]
    flips = set(_positions(round(settings.label_noise * len(valid)), len(valid), random.Random(f"{seed}:{name}:flips")))
    flipped = {valid[position] for position in flips}
    long = set(_positions(round(settings.long_share * rows), rows, random.Random(f"{seed}:{name}:long")))
    output: list[dict[str, str]] = []
    pair_types: dict[str, int] = {}
    long_valid = 0
    for index, scenario_id in enumerate(order):
        pair = _pair(by_id[scenario_id], pool, random.Random(f"{seed}:{name}:row:{index}"), index in long)
        if index in faults:
            output.append(_faulty(pair, faults[index], random.Random(f"{seed}:{name}:fault:{index}")))
            continue
        chosen, rejected = render(pair.turns, pair.chosen), render(pair.turns, pair.rejected)
        if index in flipped:
            chosen, rejected = rejected, chosen
        output.append({"chosen": chosen, "rejected": rejected})
        pair_types[pair.pair_type] = pair_types.get(pair.pair_type, 0) + 1
        long_valid += len(render(pair.turns, None)) > LONG_PROMPT_CHARS
    summary = {
        "file": SPLIT_FILES[name],
        "rows": rows,
        "valid_rows": len(valid),
        "scenarios": ids,
        "faults": {kind: _lines(faults, kind) for kind in FAULT_KINDS},
        "label_flips": {"count": len(flipped), "lines": [index + 1 for index in sorted(flipped)]},
        "long_rows": {
            "count": long_valid,
            "share_of_valid": round(long_valid / len(valid), 4) if valid else 0.0,
            "threshold_chars": LONG_PROMPT_CHARS,
        },
        "pair_types": dict(sorted(pair_types.items())),
    }
    return SplitOutput(output, summary)


def build(settings: StandinSettings, scenarios_path: Path = SCENARIOS_PATH) -> dict[str, SplitOutput]:
    """Both splits' rows with what went into them (faults, flips, long rows, pair types)."""
    train, heldout = split_scenarios(load_scenarios(scenarios_path), settings.seed)
    return {
        "train": _split_rows("train", settings.train_pairs, train, settings),
        "heldout": _split_rows("heldout", settings.heldout_pairs, heldout, settings),
    }


def generate(settings: StandinSettings, scenarios_path: Path = SCENARIOS_PATH) -> dict[str, list[dict[str, str]]]:
    """``{"train": rows, "heldout": rows}``; each row is ``{"chosen", "rejected"}`` and nothing else."""
    return {name: output.rows for name, output in build(settings, scenarios_path).items()}


def _write_json_atomic(path: Path, value: Any) -> None:
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        handle.write(json.dumps(value, indent=2, ensure_ascii=False) + "\n")
    os.replace(temporary, path)


def write_standin(
    folder: Path, settings: StandinSettings = StandinSettings(), scenarios_path: Path = SCENARIOS_PATH
) -> dict[str, Any]:
    """Write ``train.jsonl``, ``heldout.jsonl`` and ``standin.json`` (each atomically); returns the summary.

    The summary records every injected fault and label flip by 1-based line, so an evaluation can
    tell the loader's refusals from real errors and score against clean labels.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    outputs = build(settings, scenarios_path)
    for name, output in outputs.items():
        write_jsonl_atomic(folder / SPLIT_FILES[name], output.rows)
    summary = {"settings": asdict(settings), "files": {name: output.summary for name, output in outputs.items()}}
    _write_json_atomic(folder / SUMMARY_FILE, summary)
    return summary


def _digest(summary: dict[str, Any]) -> dict[str, Any]:
    """The summary without its line lists, short enough to read on a terminal."""
    files = {}
    for name, part in summary["files"].items():
        files[name] = {
            **{key: part[key] for key in ("file", "rows", "valid_rows", "long_rows", "pair_types")},
            "scenarios": len(part["scenarios"]),
            "faults": {kind: value["count"] for kind, value in part["faults"].items()},
            "label_flips": part["label_flips"]["count"],
        }
    return {"settings": summary["settings"], "files": files}


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Write the HH-style stand-in preference files.")
    parser.add_argument("--out", type=Path, required=True, help="folder for train.jsonl, heldout.jsonl, standin.json")
    parser.add_argument("--train", type=int, default=StandinSettings.train_pairs, help="training rows, faults included")
    parser.add_argument("--heldout", type=int, default=StandinSettings.heldout_pairs, help="held-out rows, faults included")
    parser.add_argument("--seed", type=int, default=StandinSettings.seed)
    args = parser.parse_args(argv)
    settings = StandinSettings(train_pairs=args.train, heldout_pairs=args.heldout, seed=args.seed)
    summary = write_standin(args.out, settings)
    print(json.dumps(_digest(summary), indent=2))
    print(f"line numbers of faults and label flips: {Path(args.out) / SUMMARY_FILE}")


if __name__ == "__main__":
    main()
