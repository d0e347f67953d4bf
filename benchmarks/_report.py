"""Where benchmark results go: ``benchmarks/results/<name>.json`` and ``<name>.png``."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Callable

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def save(out_dir: Path, name: str, summary: dict[str, Any], plot: Callable[[dict[str, Any], Path], None]) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / f"{name}.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot(summary, out_dir / f"{name}.png")
    print(f"wrote {out_dir / f'{name}.json'} and {out_dir / f'{name}.png'}")


def machine() -> dict[str, Any]:
    """What a figure was measured on: the CPU model (figures differ by 2-3x between the CPUs of
    the same cloud size) and how many cores this process may use."""
    model = platform.processor() or platform.machine()
    try:
        fields: dict[str, str] = {}
        for line in Path("/proc/cpuinfo").read_text(encoding="utf-8").splitlines():
            name, _, value = line.partition(":")
            fields.setdefault(name.strip(), value.strip())
        # Cloud VMs often name only the brand ("AMD EPYC"); family and model tell the generations apart.
        model = f"{fields.get('model name', model)} (family {fields.get('cpu family', '?')}, model {fields.get('model', '?')})"
    except OSError:
        pass
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    return {"cpu": model, "cores": cores, "python": platform.python_version()}
