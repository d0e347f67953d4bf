"""The Python code in an answer, and whether it passes the task's unit tests.

The code is the answer's fenced blocks (```python or bare ```), joined in order; an answer with
no fence counts as code only when it parses as Python as a whole. Top-level calls to ``input()``
fail (stdin is empty) and count against the answer, as they would for a user running it.
"""

from __future__ import annotations

import ast
import re

from router_training.verifiable.sandbox import SandboxLimits, SandboxResult, run_tests

FENCE = re.compile(r"```[ \t]*(?:python|py|python3)?[ \t]*\n(.*?)(?:```|\Z)", re.DOTALL | re.IGNORECASE)


def extract_code(answer: str) -> str | None:
    """The code to run, or None when the answer holds none."""
    blocks = [block.strip("\n") for block in FENCE.findall(answer) if block.strip()]
    if blocks:
        return "\n\n".join(blocks) + "\n"
    try:
        ast.parse(answer)
    except SyntaxError:
        return None
    return answer if answer.strip() else None


def passes_tests(answer: str, tests: list[str], limits: SandboxLimits = SandboxLimits()) -> SandboxResult:
    """Run the answer's code, then each test (an ``assert`` line), in the sandbox."""
    code = extract_code(answer)
    if code is None:
        return SandboxResult(False, "the answer holds no Python code", None, "", "")
    return run_tests(code, "\n".join(tests) + "\n", limits)
