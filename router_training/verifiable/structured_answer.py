"""The JSON object or CSV row in an extraction answer, compared field by field.

The answer's first JSON object is taken (inside a fence or not; single-quoted keys are not
JSON and do not count). For CSV tasks, the first line holding every expected column name is the
header and the line after it the row. Keys match case-insensitively with spaces, hyphens and
underscores treated alike; values match after normalising case and spacing, and numerically
when both sides are numbers ("42", 42 and "42.0" are equal). The score is the share of expected
fields matched, so an answer with three of four fields right scores 0.75.
"""

from __future__ import annotations

import csv
import io
import json
import re
from typing import Any

from router_training.verifiable.math_answer import parse_number


def _key(name: str) -> str:
    return re.sub(r"[\s_\-]+", "_", str(name).strip().lower())


def _value(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        return str(value).lower()
    number = parse_number(str(value).strip()) if isinstance(value, (int, float, str)) else None
    if number is not None:
        return str(number)
    if isinstance(value, list):
        return json.dumps(sorted(_value(item) for item in value))
    return re.sub(r"\s+", " ", str(value)).strip().strip(".").casefold()


def first_json_object(answer: str) -> dict[str, Any] | None:
    decoder = json.JSONDecoder()
    for match in re.finditer(r"\{", answer):
        try:
            value, _ = decoder.raw_decode(answer, match.start())
        except json.JSONDecodeError:
            continue
        if isinstance(value, dict):
            return value
    return None


def first_csv_row(answer: str, columns: list[str]) -> dict[str, str] | None:
    wanted = {_key(column) for column in columns}
    lines = [line.strip().strip("`") for line in answer.splitlines() if line.strip() and not line.strip().startswith("```")]
    for index, line in enumerate(lines[:-1]):
        header = next(csv.reader(io.StringIO(line)))
        if wanted <= {_key(name) for name in header}:
            row = next(csv.reader(io.StringIO(lines[index + 1])))
            return dict(zip(header, row))
    return None


def field_score(answer: str, expected: dict[str, Any], output_format: str = "json") -> float:
    """Share of ``expected`` fields the answer states correctly (0 when it has no object or row)."""
    found = first_json_object(answer) if output_format == "json" else first_csv_row(answer, list(expected))
    if not found:
        return 0.0
    given = {_key(name): value for name, value in found.items()}
    matched = sum(1 for name, value in expected.items() if _key(name) in given and _value(given[_key(name)]) == _value(value))
    return matched / len(expected)
