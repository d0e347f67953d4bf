"""Verifiable tasks: a prompt with a way to check any answer to it, and a score in [0, 1].

One file per category in ``router_training/data/verifiable/``. Each task carries a reference
answer that passes its own check and a wrong one that fails it (the tests hold the data to
that), which become preference pairs for the reward model's "correctness" capability.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from router_training.jsonl import DataError, jsonl_objects
from router_training.verifiable import code_answer, math_answer, structured_answer
from router_training.verifiable.sandbox import SandboxLimits

DATA_DIR = Path(__file__).resolve().parents[1] / "data" / "verifiable"
CHECKED_CATEGORIES = ("math", "coding", "extraction")
Split = Literal["reward", "scoring", "heldout"]


class VerifiableTask(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str = Field(description="Unique within its file: family and index, e.g. 'unit_price-3'.")
    category: Literal["math", "coding", "extraction"]
    split: Split = Field(description="reward: preference pairs; scoring: the mapping's evidence; heldout: the end-to-end check.")
    family: str = Field(description="The template it came from; held-out families are not used by the other splits.")
    prompt: str
    reference: str = Field(description="An answer that passes the check.")
    wrong: str = Field(description="A plausible answer that fails the check.")
    answer: str | None = Field(None, description="math: the expected final number.")
    tests: tuple[str, ...] = Field((), description="coding: assert statements run after the answer's code.")
    fields: dict[str, Any] = Field(default_factory=dict, description="extraction: the expected fields.")
    output_format: Literal["json", "csv"] = "json"

    @model_validator(mode="after")
    def _has_its_check(self) -> "VerifiableTask":
        needed = {"math": self.answer is not None, "coding": bool(self.tests), "extraction": bool(self.fields)}
        if not needed[self.category]:
            what = {"math": "an `answer`", "coding": "`tests`", "extraction": "`fields`"}[self.category]
            raise ValueError(f"a {self.category} task needs {what}")
        return self

    @property
    def messages(self) -> tuple[dict[str, str], ...]:
        return ({"role": "user", "content": self.prompt},)


def score(task: VerifiableTask, answer: str, limits: SandboxLimits = SandboxLimits()) -> float:
    """1.0 for a right answer, 0.0 for a wrong one; extraction gives partial credit per field."""
    if task.category == "math":
        assert task.answer is not None
        return float(math_answer.is_correct(answer, task.answer))
    if task.category == "coding":
        return float(code_answer.passes_tests(answer, list(task.tests), limits).passed)
    return structured_answer.field_score(answer, task.fields, task.output_format)


def read_tasks(folder: Path = DATA_DIR, split: Split | None = None, categories: tuple[str, ...] = CHECKED_CATEGORIES) -> list[VerifiableTask]:
    """The tasks of ``categories`` (in that order), optionally of one split; errors name file and line."""
    tasks: list[VerifiableTask] = []
    for category in categories:
        path = Path(folder) / f"{category}.jsonl"
        if not path.is_file():
            continue
        for where, row in jsonl_objects(path):
            try:
                task = VerifiableTask.model_validate(row)
            except ValidationError as exc:
                raise DataError(f"{where}: {exc.errors()[0]['msg']} ({exc.errors()[0]['loc']})") from exc
            if task.category != category:
                raise DataError(f"{where}: a {task.category} task in {path.name}")
            if split is None or task.split == split:
                tasks.append(task)
    return tasks


def preference_pairs(folder: Path = DATA_DIR, split: Split = "reward") -> list[Any]:
    """Each task's reference over its wrong answer, as a "correctness" preference pair of its category."""
    from router_training.reward.data import PreferencePair

    return [
        PreferencePair(prompt=task.prompt, chosen=task.reference, rejected=task.wrong, category=task.category,
                       capability="correctness", where=f"{folder}/{task.category}.jsonl#{task.id}")
        for task in read_tasks(folder, split)
    ]
