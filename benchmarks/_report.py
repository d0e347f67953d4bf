"""Where benchmark results go: ``benchmarks/results/<name>.json`` and ``<name>.png``."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def save(out_dir: Path, name: str, summary: dict[str, Any], plot: Callable[[dict[str, Any], Path], None]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot(summary, out_dir / f"{name}.png")
    print(f"wrote {out_dir / f'{name}.json'} and {out_dir / f'{name}.png'}")
