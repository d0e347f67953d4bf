"""The verifiable checks: each kind tells a right answer from a wrong one, and the code sandbox holds.

The sandbox tests run real untrusted-looking programs in real child processes: a connection to
the Redis that is listening on this machine, reads and writes outside the sandbox, a busy loop,
a memory bomb, an early exit.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import pytest

from router_training.verifiable import code_answer, make_data, math_answer, structured_answer
from router_training.verifiable.sandbox import SandboxLimits, run_tests
from router_training.verifiable.tasks import DATA_DIR, read_tasks, score

LIMITS = SandboxLimits(wall_s=6, cpu_s=2, memory_mb=256)


# --- the sandbox -------------------------------------------------------------------------------


def test_sandbox_runs_a_correct_solution_and_fails_a_wrong_one() -> None:
    assert run_tests("def add(a, b):\n    return a + b\n", "assert add(2, 3) == 5\n", LIMITS).passed
    wrong = run_tests("def add(a, b):\n    return a - b\n", "assert add(2, 3) == 5\n", LIMITS)
    assert not wrong.passed and "AssertionError" in wrong.reason


def test_sandbox_refuses_the_network_even_to_a_listening_local_server() -> None:
    # Redis listens on 127.0.0.1:6379 for the whole suite: a refused connection proves the sandbox, not an empty port.
    result = run_tests("import socket\nsocket.create_connection(('127.0.0.1', 6379), timeout=2)\n", "assert True\n", LIMITS)
    assert not result.passed
    assert "PermissionError" in result.reason and "socket" in result.reason, result.reason


def test_sandbox_refuses_file_system_escape(tmp_path: Path) -> None:
    outside = tmp_path / "escaped.txt"
    writes = run_tests(f"open({str(outside)!r}, 'w').write('x')\n", "assert True\n", LIMITS)
    assert not writes.passed and "PermissionError" in writes.reason
    assert not outside.exists(), "nothing was written outside the sandbox's own folder"
    reads = run_tests("print(open('/etc/passwd').read())\n", "assert True\n", LIMITS)
    assert not reads.passed and "PermissionError" in reads.reason and "root:" not in reads.stdout
    shell = run_tests(f"import os\nos.system('touch {outside}')\n", "assert True\n", LIMITS)
    assert not shell.passed and not outside.exists(), "no shell command ran"
    # Its own temporary folder is writable, so ordinary file handling in an answer works.
    assert run_tests("open('notes.txt', 'w').write('hi')\n", "assert open('notes.txt').read() == 'hi'\n", LIMITS).passed


def test_sandbox_kills_an_infinite_loop_within_its_limits() -> None:
    limits = SandboxLimits(wall_s=2, cpu_s=1)
    started = time.monotonic()
    busy = run_tests("while True:\n    pass\n", "assert True\n", limits)
    assert not busy.passed and busy.reason == "timed out"
    sleeping = run_tests("import time\ntime.sleep(3600)\n", "assert True\n", limits)
    assert not sleeping.passed and sleeping.reason == "timed out"
    assert time.monotonic() - started < 2 * limits.wall_s + 2, "both ended at their limits (CPU seconds, then the wall clock)"


def test_sandbox_stops_a_memory_bomb_and_the_caller_is_unharmed() -> None:
    bomb = run_tests("blocks = []\nwhile True:\n    blocks.append(bytearray(50 * 2**20))\n", "assert True\n", LIMITS)
    assert not bomb.passed and bomb.reason == "out of memory"
    assert run_tests("x = 1\n", "assert x == 1\n", LIMITS).passed, "the next run is unaffected"


def test_sandbox_inherits_no_secrets_and_an_early_exit_does_not_pass(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COE_TEST_SECRET", "hunter2")
    clean = run_tests("import os\nassert 'hunter2' not in repr(dict(os.environ)), 'secret leaked'\n", "assert True\n", LIMITS)
    assert clean.passed, clean.reason
    exits = run_tests("import sys\nprint('all tests passed')\nsys.exit(0)\n", "assert False\n", LIMITS)
    assert not exits.passed and exits.reason == "the answer ended before its tests ran"


# --- answer checks -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Total: 4 + 5 = 9.\nAnswer: 9", "9"),
        ("So the change is $1,250.50.", "1250.5"),
        ("Each piece is 3/4 m long", "0.75"),
        ("The answer is **12** km, since 3 × 4 = 12.", "12"),
        ("It drops to −7 degrees.", "-7"),
        ("\\boxed{42} because 6 × 7", "42"),
    ],
)
def test_math_check_accepts_the_right_final_number(answer: str, expected: str) -> None:
    assert math_answer.is_correct(answer, expected)


@pytest.mark.parametrize(
    ("answer", "expected"),
    [
        ("Answer: 8 (I first thought 9)", "9"),  # the marked answer counts, not a number after it
        ("3 + 4 = 7, then 7 × 2 = 14", "7"),  # the last number is the final one
        ("I cannot work that out.", "5"),
    ],
)
def test_math_check_rejects_a_wrong_or_missing_final_number(answer: str, expected: str) -> None:
    assert not math_answer.is_correct(answer, expected)


def test_code_check_runs_the_fenced_code_against_the_tests() -> None:
    tests = ["assert square(3) == 9", "assert square(-2) == 4"]
    right = "Here you go:\n```python\ndef square(x):\n    return x * x\n```\nIt multiplies x by itself."
    wrong = "```python\ndef square(x):\n    return x * 2\n```"
    assert code_answer.passes_tests(right, tests, LIMITS).passed
    assert not code_answer.passes_tests(wrong, tests, LIMITS).passed
    prose = code_answer.passes_tests("You can square a number by multiplying it by itself.", tests, LIMITS)
    assert not prose.passed and prose.reason == "the answer holds no Python code"


def test_extraction_check_compares_field_by_field() -> None:
    expected = {"name": "Nina", "age": 34, "city": "Lisbon"}
    assert structured_answer.field_score('```json\n{"Name": "nina", "age": "34", "city": "Lisbon"}\n```', expected) == 1.0
    assert structured_answer.field_score('{"name": "Nina", "age": 43, "city": "Lisbon"}', expected) == pytest.approx(2 / 3)
    assert structured_answer.field_score("Nina is 34 and lives in Lisbon.", expected) == 0.0
    csv_answer = "Sure:\nname,age,city\nNina,34,Lisbon"
    assert structured_answer.field_score(csv_answer, expected, "csv") == 1.0
    assert structured_answer.field_score("name,age,city\nNina,35,Lisbon", expected, "csv") == pytest.approx(2 / 3)


# --- the task files ----------------------------------------------------------------------------


def test_task_files_are_what_the_generator_writes() -> None:
    for category in make_data.FAMILIES:
        rows = [json.loads(line) for line in (DATA_DIR / f"{category}.jsonl").read_text(encoding="utf-8").splitlines()]
        assert rows == make_data.make_tasks(category), f"{category}.jsonl differs: run python -m router_training.verifiable.make_data"


def test_every_reference_passes_its_check_and_every_wrong_answer_fails() -> None:
    tasks = read_tasks()
    sampled: list = []
    for task in tasks:
        if task.category != "coding" or task.family not in {seen.family for seen in sampled}:
            sampled.append(task)  # every math and extraction task; one coding task per family (each is a sandbox run)
    for task in sampled:
        assert score(task, task.reference, LIMITS) == 1.0, f"{task.id}: the reference fails its own check"
        assert score(task, task.wrong, LIMITS) < 1.0, f"{task.id}: the wrong answer passes"


def test_held_out_tasks_share_no_family_or_prompt_with_the_others() -> None:
    tasks = read_tasks()
    for category in make_data.FAMILIES:
        held = [task for task in tasks if task.category == category and task.split == "heldout"]
        used = [task for task in tasks if task.category == category and task.split != "heldout"]
        assert len(held) >= 32 and sum(task.split == "scoring" for task in used) >= 32
        assert not {task.family for task in held} & {task.family for task in used}
    assert len({task.prompt for task in tasks}) == len(tasks)
