"""The final number of a math answer, and whether it equals the known result.

Small models end their answers in many ways: "Answer: 42", "so the total is $1,250.", "= 3/4",
"**12 km**", "25%". The number taken is, in order of preference: the one after an explicit
"answer" marker (``Answer:``, ``the answer is``, ``####``, ``\\boxed{}``), else the last number in
the answer. Thousands separators, currency signs, a unicode minus and simple fractions are
understood; a trailing percent sign or unit is ignored (the task states the unit it expects).
"""

from __future__ import annotations

import re
from fractions import Fraction

_NUMBER = r"[-−]?\$?\s?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s?/\s?\d+(?:\.\d+)?)?"
NUMBER = re.compile(_NUMBER)
MARKERS = (
    re.compile(r"\\boxed\{\s*(" + _NUMBER + r")"),
    re.compile(r"####\s*(" + _NUMBER + r")"),
    re.compile(r"(?:final answer|answer)\s*(?:is|:|=)?\s*[:=]?\s*\**\s*(" + _NUMBER + r")", re.IGNORECASE),
)
TOLERANCE = 1e-6


def parse_number(text: str) -> Fraction | None:
    """``"$1,250.50"`` → 1250.5, ``"3/4"`` → 0.75, ``"−7"`` → -7; None when it is not a number."""
    cleaned = text.replace("−", "-").replace("$", "").replace(",", "").replace(" ", "")
    try:
        if "/" in cleaned:
            numerator, denominator = cleaned.split("/", 1)
            return Fraction(numerator) / Fraction(denominator) if Fraction(denominator) != 0 else None
        return Fraction(cleaned)
    except (ValueError, ZeroDivisionError):
        return None


def final_number(answer: str) -> Fraction | None:
    """The number the answer ends on (see the module's docstring); None when it has none."""
    for marker in MARKERS:
        found = marker.findall(answer)
        if found:
            return parse_number(found[-1])
    numbers = NUMBER.findall(answer)
    return parse_number(numbers[-1]) if numbers else None


def is_correct(answer: str, expected: float | str) -> bool:
    """Whether the final number equals ``expected`` (relative tolerance 1e-6, or equal to the cent)."""
    got = final_number(answer)
    want = parse_number(str(expected))
    if got is None or want is None:
        return False
    if abs(got - want) <= TOLERANCE * max(1, abs(want)):
        return True
    return round(float(got), 2) == round(float(want), 2)
