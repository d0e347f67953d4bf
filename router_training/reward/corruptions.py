"""Deterministic corruptions of a good answer, one family per capability.

Each family makes the answer worse in one respect and (as far as text edits allow) leaves the
others alone, so (good, corrupted) is a preference pair for that capability:

- **correctness**: a fact changes. One of: digits of one or two numbers are altered; a word
  or operator is swapped for its opposite (``more``/``less``, ``<``/``>``, ``+``/``-``,
  ``True``/``False``, ...); a key term (a capitalised name the prompt does not contain) is
  replaced by a key term from another answer of the same category.
- **reasoning**: the justification breaks. Multi-step answers keep their conclusion but lose
  the steps, get a non-sequitur instead of them, or have the steps reversed (conclusion
  first); code has the statements of its body reversed; a one-sentence answer is propped up
  by a non-sequitur.
- **relevance**: the (good) answer to a prompt of another category.
- **completeness**: cut off at 35–65 % of its length, mid-sentence, at a word boundary.
- **clarity**: sentences (or lines) shuffled, filler phrases injected, and one sentence repeated.
- **format**: code fences stripped and code collapsed onto one line; list markers and line
  breaks removed; plain prose gets hard line breaks mid-sentence and loses its sentence
  punctuation.

Every function takes a seeded ``random.Random`` and returns text that differs from the input.
"""

from __future__ import annotations

import random
import re
from dataclasses import dataclass
from typing import Callable, Sequence

FENCE = re.compile(r"```[^\n]*\n(.*?)\n?```", re.DOTALL)
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")
SENTENCE_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(])")
LIST_MARKER = re.compile(r"^\s*(?:[-*•]|\d+[.)])\s+")
CAPITALISED = re.compile(r"\b[A-Z][a-z]{2,}\b")
ABBREVIATIONS = ("Mr.", "Mrs.", "Dr.", "St.", "J.R.R.", "e.g.", "i.e.", "vs.")
OPPOSITES = (
    ("more", "less"), ("larger", "smaller"), ("increase", "decrease"), ("before", "after"), ("first", "last"),
    ("always", "never"), ("True", "False"), ("positive", "negative"), ("higher", "lower"), ("heavier", "lighter"),
    ("taller", "shorter"), ("odd", "even"), ("east", "west"), ("north", "south"), ("mutable", "immutable"),
    ("valid", "invalid"), ("Yes", "No"), ("hot", "cold"), ("below", "above"), ("acid", "base"), ("up", "down"),
    ("earlier", "later"), ("longer", "shorter"), ("strongly", "weakly"), ("denser", "lighter"), ("can", "cannot"),
)
OPERATORS = ((" <= ", " >= "), (" < ", " > "), (" == ", " != "), (" + ", " - "), (" * ", " / "), ("[::-1]", "[::1]"))
NON_SEQUITURS = (
    "This follows from the fact that the sky is blue.",
    "Since most people would agree, it must be true.",
    "Because the question is short, the answer has to be simple.",
    "Everyone knows this, so no explanation is needed.",
    "It must be right, because it sounds right.",
    "The number seven is lucky, which settles it.",
)
FILLERS = ("Basically, ", "So, like, ", "I mean, ", "Well, you know, ", "Kind of, sort of, ", "To be honest, as I said, ")


@dataclass(frozen=True)
class Answer:
    prompt: str
    answer: str
    category: str


def sentences(text: str) -> list[str]:
    """Sentences of a prose paragraph; common abbreviations do not end one."""
    pieces: list[str] = []
    for piece in SENTENCE_END.split(text.strip()):
        if pieces and pieces[-1].endswith(ABBREVIATIONS):
            pieces[-1] = f"{pieces[-1]} {piece}"
        else:
            pieces.append(piece)
    return [piece for piece in pieces if piece]


def units(text: str) -> tuple[list[str], str]:
    """The answer as steps and the separator to rejoin them.

    Code blocks are one unit each (prose around them is split into sentences); multi-line
    text is split into lines; a paragraph into sentences.
    """
    if FENCE.search(text):
        parts: list[str] = []
        position = 0
        for match in FENCE.finditer(text):
            parts += sentences(text[position : match.start()])
            parts.append(match.group(0))
            position = match.end()
        parts += sentences(text[position:])
        return parts, "\n"
    if "\n" in text.strip():
        return [line for line in text.split("\n") if line.strip()], "\n"
    return sentences(text), " "


def _different(original: str, candidate: str, fallback: Callable[[], str]) -> str:
    return candidate if candidate.strip() and candidate.strip() != original.strip() else fallback()


# --- correctness ---------------------------------------------------------------------------


def _alter_number(token: str, rng: random.Random) -> str:
    positions = [index for index, char in enumerate(token) if char.isdigit()]
    index = rng.choice(positions)
    choices = [digit for digit in "0123456789" if digit != token[index] and not (digit == "0" and index == 0 and len(positions) > 1)]
    return token[:index] + rng.choice(choices) + token[index + 1 :]


def _change_numbers(text: str, rng: random.Random) -> str:
    matches = list(NUMBER.finditer(text))
    chosen = sorted(rng.sample(matches, k=min(len(matches), rng.choice((1, 2)))), key=lambda match: match.start())
    result, position = [], 0
    for match in chosen:
        result += [text[position : match.start()], _alter_number(match.group(0), rng)]
        position = match.end()
    return "".join(result) + text[position:]


def _opposites_in(text: str) -> list[tuple[str, str]]:
    found = []
    for left, right in OPPOSITES:
        for word, opposite in ((left, right), (right, left)):
            if re.search(rf"\b{re.escape(word)}\b", text):
                found.append((word, opposite))
    found += [(op, other) for left, right in OPERATORS for op, other in ((left, right), (right, left)) if op in text]
    return found


def _swap_opposite(text: str, rng: random.Random) -> str:
    word, opposite = rng.choice(_opposites_in(text))
    if word[0].isalnum():
        matches = list(re.finditer(rf"\b{re.escape(word)}\b", text))
    else:
        matches = list(re.finditer(re.escape(word), text))
    match = rng.choice(matches)
    return text[: match.start()] + opposite + text[match.end() :]


def _key_terms(answer: Answer) -> list[str]:
    """Capitalised words inside a sentence (names, places) that the prompt does not contain."""
    terms = set()
    for match in CAPITALISED.finditer(answer.answer):
        before = answer.answer[: match.start()].rstrip(" \"'(")
        if before and before[-1] not in ".!?:\n" and match.group(0) not in answer.prompt:
            terms.add(match.group(0))
    return sorted(terms)


def _swap_key_term(answer: Answer, rng: random.Random, pool: Sequence[str]) -> str:
    term = rng.choice(_key_terms(answer))
    replacement = rng.choice([other for other in pool if other != term])
    return re.sub(rf"\b{re.escape(term)}\b", replacement, answer.answer)


def corrupt_correctness(answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """Change a fact: a number, an opposite word/operator, or a key term."""
    text = answer.answer
    pool = sorted({term for other in others if other.category == answer.category for term in _key_terms(other)})
    operations: list[Callable[[], str]] = []
    if NUMBER.search(text):
        operations.append(lambda: _change_numbers(text, rng))
    if _opposites_in(text):
        operations.append(lambda: _swap_opposite(text, rng))
    if _key_terms(answer) and len(pool) > 1:
        operations.append(lambda: _swap_key_term(answer, rng, pool))
    if not operations:  # no number, opposite or name: replace the longest word with another answer's
        words = sorted(set(re.findall(r"\b[a-z]{5,}\b", text)), key=lambda word: (-len(word), word))
        donors = sorted({word for other in others if other.category == answer.category for word in re.findall(r"\b[a-z]{6,}\b", other.answer)} - set(words))
        target = words[0] if words else text.split()[-1]
        operations.append(lambda: re.sub(rf"\b{re.escape(target)}\b", rng.choice(donors), text, count=1))
    return rng.choice(operations)()


# --- reasoning -----------------------------------------------------------------------------


def corrupt_reasoning(answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """Keep the conclusion, break the justification."""
    text = answer.answer
    steps, joiner = units(text)
    non_sequitur = rng.choice(NON_SEQUITURS)
    code = [index for index, step in enumerate(steps) if step.startswith("```")]
    if code:
        block = steps[code[0]]
        lines = block.split("\n")
        body = lines[2:-1]  # the fence line and the first statement stay, the rest is reversed
        if len(body) >= 2 and body[::-1] != body:  # reorder the steps of the program
            steps[code[0]] = "\n".join(lines[:2] + body[::-1] + lines[-1:])
        else:  # drop the explanation, if any, and justify the code with a non-sequitur
            steps = [*(steps[index] for index in code), non_sequitur]
        return _different(text, joiner.join(steps), lambda: f"{non_sequitur} {text}")
    if len(steps) < 2:
        return f"{non_sequitur} {text}" if rng.random() < 0.5 else f"{text} {non_sequitur}"
    operation = rng.choice(("conclusion_only", "non_sequitur", "reversed"))
    if operation == "conclusion_only":
        result = steps[-1]
    elif operation == "non_sequitur":
        result = joiner.join([non_sequitur, steps[-1]])
    else:
        result = joiner.join([steps[-1], *steps[-2::-1]])
    return _different(text, result, lambda: joiner.join([non_sequitur, steps[-1]]))


# --- relevance, completeness ---------------------------------------------------------------


def corrupt_relevance(answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """A good answer, but to a prompt of another category."""
    candidates = [other.answer for other in others if other.category != answer.category and other.answer != answer.answer]
    if not candidates:
        raise ValueError("relevance corruptions need answers from at least two categories")
    return rng.choice(candidates)


def corrupt_completeness(answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """The answer cut off mid-way, at a word boundary."""
    text = answer.answer
    cut = int(len(text) * rng.uniform(0.35, 0.65))
    space = text.rfind(" ", 0, cut + 1)
    truncated = text[: space if space > 0 else cut].rstrip(" ,;:-")
    words = text.split()
    return _different(text, truncated, lambda: " ".join(words[: max(1, len(words) // 2)]) if len(words) > 1 else text[: max(1, len(text) // 2)])


# --- clarity, format -----------------------------------------------------------------------


def corrupt_clarity(answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """Shuffled order, filler phrases and a repeated sentence."""
    text = answer.answer
    steps, joiner = units(text)
    prose = [index for index, step in enumerate(steps) if not step.startswith("```")]
    if len(steps) >= 2:
        shuffled = steps[:]
        rng.shuffle(shuffled)
        steps = shuffled if shuffled != steps else steps[1:] + steps[:1]
        prose = [index for index, step in enumerate(steps) if not step.startswith("```")]
    for index in rng.sample(prose, k=min(2, len(prose))):
        step = steps[index]
        lowered = step[0].lower() + step[1:] if step[0].isupper() and step[1:2].islower() else step
        steps[index] = rng.choice(FILLERS) + lowered
    if prose:
        repeated = steps[rng.choice(prose)]
        steps.insert(rng.randrange(len(steps) + 1), f"As I said, {repeated[0].lower()}{repeated[1:]}")
    else:
        steps.append("So yeah, that is basically, like, the thing, more or less.")
    return _different(text, joiner.join(steps), lambda: f"{FILLERS[0]}{text}")


def corrupt_format(answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """Layout destroyed: no fences, no list markers, no line breaks (or breaks in odd places)."""
    text = answer.answer
    if FENCE.search(text):
        flattened = FENCE.sub(lambda match: " ".join(match.group(1).split()), text)
        return " ".join(flattened.split())
    if "\n" in text.strip():
        lines = [LIST_MARKER.sub("", line).strip() for line in text.split("\n") if line.strip()]
        return " ".join(lines)
    words = re.sub(r"[.!?](?=\s|$)", "", text).split()
    lines, position = [], 0
    while position < len(words):
        step = rng.randint(2, 5)
        lines.append(" ".join(words[position : position + step]))
        position += step
    return _different(text, "\n".join(lines), lambda: text.rstrip(".!?") + "\n")


CORRUPTIONS: dict[str, Callable[[Answer, random.Random, Sequence[Answer]], str]] = {
    "correctness": corrupt_correctness,
    "reasoning": corrupt_reasoning,
    "relevance": corrupt_relevance,
    "completeness": corrupt_completeness,
    "clarity": corrupt_clarity,
    "format": corrupt_format,
}


def corrupt(capability: str, answer: Answer, rng: random.Random, others: Sequence[Answer]) -> str:
    """The answer made worse in terms of ``capability``; ``others`` supply donor text."""
    if capability not in CORRUPTIONS:
        raise ValueError(f"no corruption family for capability {capability!r}; known: {sorted(CORRUPTIONS)}")
    result = CORRUPTIONS[capability](answer, rng, others)
    if not result.strip() or result.strip() == answer.answer.strip():
        raise ValueError(f"the {capability} corruption left the answer to {answer.prompt!r} unchanged")
    return result
