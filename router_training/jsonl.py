"""Reading the training jobs' JSONL files, with errors that name the file and the line."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any


class DataError(ValueError):
    """Bad training data; the message names the file, the line and what is wrong.

    ``reason`` is a short stable name for the kind of fault (``empty_response``, ...), so that
    a job that skips bad rows can count them by kind.
    """

    def __init__(self, message: str, reason: str = "invalid") -> None:
        super().__init__(message)
        self.reason = reason


def jsonl_objects(path: Path) -> Iterator[tuple[str, dict[str, Any]]]:
    """``(where, row)`` for each non-blank line, ``where`` being ``path:line``.

    A line that is not JSON, or not a JSON object, raises :class:`DataError` at once.
    """
    for where, row in jsonl_rows(path):
        if isinstance(row, DataError):
            raise row
        yield where, row


def jsonl_rows(path: Path) -> Iterator[tuple[str, dict[str, Any] | DataError]]:
    """Like :func:`jsonl_objects`, but a bad line comes back as its :class:`DataError` instead of
    ending the file, for a reader that skips bad rows and counts them."""
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            where = f"{path}:{number}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                yield where, DataError(f"{where}: not valid JSON ({exc.msg} at column {exc.colno})", "not_json")
                continue
            if not isinstance(row, dict):
                yield where, DataError(f"{where}: each line must be a JSON object", "not_object")
                continue
            yield where, row
