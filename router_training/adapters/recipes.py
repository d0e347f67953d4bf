"""Which data and which answer format each default adapter is trained for.

A LoRA expert in the config is trained by ``coe adapters train`` when its adapter id names a
recipe here; adapters without a recipe are the user's own and are never overwritten.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

SEED_DATA_DIR = Path(__file__).resolve().parent.parent / "data" / "adapters"


@dataclass(frozen=True)
class AdapterRecipe:
    adapter_id: str
    data_file: str
    format_pattern: re.Pattern[str]  # what a response in the adapter's style looks like
    description: str

    @property
    def data_path(self) -> Path:
        return SEED_DATA_DIR / self.data_file

    def follows_format(self, response: str) -> bool:
        return bool(self.format_pattern.search(response.strip()))


RECIPES: dict[str, AdapterRecipe] = {
    "math": AdapterRecipe(
        adapter_id="math",
        data_file="math.jsonl",
        format_pattern=re.compile(r"^Step 1:.*\nAnswer: -?[0-9][0-9.,]*\s*$", re.DOTALL),
        description="step-by-step arithmetic ending in 'Answer: <number>'",
    ),
    "code": AdapterRecipe(
        adapter_id="code",
        data_file="code.jsonl",
        format_pattern=re.compile(r"^```python\n.*?\n```", re.DOTALL),
        description="a fenced Python code block",
    ),
}
