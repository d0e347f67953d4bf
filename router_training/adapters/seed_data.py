"""Instruction/response seed data for the math and code style adapters.

Both adapters are trained on SmolLM2-135M-Instruct and must change the *style*
of its answers: the math adapter answers in "Step n: ... / Answer: n" form, the
code adapter answers with a fenced Python block. A shared family of arithmetic
prompts appears in both data sets with different answers, so each adapter
learns its style rather than the topic of the question.
"""

from __future__ import annotations

import json
import os
import random
import re
import tempfile
from pathlib import Path
from typing import Callable, TypeVar

from router_training.adapters.code_tasks import TASKS, code_response
from router_training.adapters.math_tasks import SHARED_TASKS, WORD_TASKS, Problem, math_response

T = TypeVar("T")

# Share of each set drawn from the common prompt pool. Both sets take a prefix of
# the same pool, so the smaller share is exactly the overlap between them.
MATH_SHARED_SHARE = 0.4
CODE_SHARED_SHARE = 0.3
MATH_SHARED_TASK_RATE = 0.2  # how often math-only draws still use a shared task

SHARED_PREFIXES = ("Quick question: ", "Please help: ", "I'm practising mental math. ", "Can you help me? ",
                   "My calculator is broken. ", "I want to double-check this. ", "Homework check: ", "Hi! ")
SHARED_SUFFIXES = (" Thanks!", " Thank you.", " Thanks.")
MATH_PREFIXES = ("Math problem: ", "Word problem: ", "Solve this. ", "Help me with my homework. ",
                 "I'm studying for a quiz. ", "My teacher gave us this one. ")
MATH_SUFFIXES = (" Show your steps.", " Work it out step by step.", " Show the working.", " Explain briefly.",
                 " Solve it, please.")
CODE_PREFIXES = ("I'm learning Python. ", "For a small script: ", "Quick one: ", "Python question: ",
                 "I'm new to coding. ", "Working on a side project. ", "Could you help? ")
CODE_SUFFIXES = (" Use Python.", " Keep it short.", " Just the code, please.", " In Python, please.", " Thanks!")


def _sentence_count(text: str) -> int:
    return len(re.findall(r"[.?!](?:\s|$)", text))


def _phrase(rng: random.Random, text: str, prefixes: tuple[str, ...], suffixes: tuple[str, ...]) -> str:
    """Vary the surface form of a prompt: terse, with context, or with a closing remark.

    Prompts stay at three sentences or fewer so they resemble real short requests.
    """
    if rng.random() < 0.1:
        return text[0].lower() + text[1:].rstrip(" .?")
    if rng.random() < 0.3:
        text = rng.choice(prefixes) + text
    if suffixes and rng.random() < 0.25:
        longer = (text if text[-1] in ".?!" else text + ".") + rng.choice(suffixes)
        if _sentence_count(longer) <= 3:
            text = longer
    return text


def _unique(make: Callable[[], tuple[str, T]], count: int, seen: set[str]) -> list[tuple[str, T]]:
    """Draw until `count` items with instructions not yet in `seen` (which is updated)."""
    items: list[tuple[str, T]] = []
    for _ in range(max(100, count * 200)):
        if len(items) >= count:
            return items
        instruction, payload = make()
        if instruction not in seen:
            seen.add(instruction)
            items.append((instruction, payload))
    if len(items) < count:
        raise RuntimeError(f"could only draw {len(items)} distinct instructions out of {count}")
    return items


def shared_pool(size: int, seed: int) -> list[tuple[str, Problem]]:
    """Prompts used by both sets; any size is a prefix of a larger pool for the same seed."""
    rng = random.Random(seed * 1_000_003 + 17)

    def make() -> tuple[str, Problem]:
        problem = rng.choice(SHARED_TASKS)(rng)
        return _phrase(rng, problem.question, SHARED_PREFIXES, SHARED_SUFFIXES), problem

    return _unique(make, size, set())


def math_examples(count: int, seed: int) -> list[dict[str, str]]:
    """Step-by-step answers: the shared arithmetic family plus more word problems."""
    shared = shared_pool(round(count * MATH_SHARED_SHARE), seed)
    rng = random.Random(seed)

    def make() -> tuple[str, Problem]:
        tasks = SHARED_TASKS if rng.random() < MATH_SHARED_TASK_RATE else WORD_TASKS
        problem = rng.choice(tasks)(rng)
        text = _phrase(rng, problem.question, MATH_PREFIXES + SHARED_PREFIXES, MATH_SUFFIXES + SHARED_SUFFIXES)
        return text, problem

    extra = _unique(make, count - len(shared), {text for text, _ in shared})
    rows = [{"instruction": text, "response": math_response(problem)} for text, problem in shared + extra]
    rng.shuffle(rows)
    return rows


def code_examples(count: int, seed: int) -> list[dict[str, str]]:
    """Fenced Python answers: the shared arithmetic family plus small programming tasks."""
    shared = shared_pool(round(count * CODE_SHARED_SHARE), seed)
    rng = random.Random(seed)
    rows = [{"instruction": text,
             "response": code_response(problem.code, f"It prints {problem.printed}." if rng.random() < 0.3 else "")}
            for text, problem in shared]

    def make() -> tuple[str, tuple[str, str]]:
        instruction, code, note = rng.choice(TASKS).build(rng)
        suffixes = () if "python" in instruction.lower() else CODE_SUFFIXES
        return _phrase(rng, instruction, CODE_PREFIXES, suffixes), (code, note if rng.random() < 0.5 else "")

    extra = _unique(make, count - len(shared), {text for text, _ in shared})
    rows += [{"instruction": text, "response": code_response(code, note)} for text, (code, note) in extra]
    rng.shuffle(rows)
    return rows


def _write_jsonl_atomic(path: Path, rows: list[dict[str, str]]) -> None:
    """Write via a temp file in the same directory so readers never see a partial file."""
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o644)
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp_name, path)
    except BaseException:
        Path(tmp_name).unlink(missing_ok=True)
        raise


def write_seed_data(out_dir: Path, count: int = 400, seed: int = 0) -> dict[str, Path]:
    """Write math.jsonl and code.jsonl into `out_dir`; returns adapter name -> path."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = {"math": out_dir / "math.jsonl", "code": out_dir / "code.jsonl"}
    _write_jsonl_atomic(paths["math"], math_examples(count, seed))
    _write_jsonl_atomic(paths["code"], code_examples(count, seed))
    return paths
