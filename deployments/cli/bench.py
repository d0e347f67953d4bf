"""``coe bench NAME [ARGS...]``: run a benchmark script from ``benchmarks/``.

The scripts stay plain files (``python benchmarks/NAME.py`` works too); this command only
finds them, so the names it accepts are exactly the scripts that exist.
"""

from __future__ import annotations

import argparse
import runpy
import sys

from services.config import PROJECT_ROOT

BENCHMARKS_DIR = PROJECT_ROOT / "benchmarks"


def available() -> list[str]:
    return sorted(path.stem for path in BENCHMARKS_DIR.glob("*.py") if not path.stem.startswith("_"))


def register(commands: argparse._SubParsersAction) -> None:
    bench = commands.add_parser("bench", help="Run a benchmark from benchmarks/ (e.g. `coe bench batching`).")
    bench.add_argument("name", help="Benchmark name: a script in benchmarks/ (see `coe bench list`).")
    bench.add_argument("arguments", nargs=argparse.REMAINDER, help="Passed to the benchmark.")
    bench.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    names = available()
    if args.name == "list":
        print("\n".join(names))
        return 0
    if args.name not in names:
        raise ValueError(f"unknown benchmark {args.name!r}; available: {', '.join(names)}")
    script = BENCHMARKS_DIR / f"{args.name}.py"
    saved_argv, saved_path = sys.argv, list(sys.path)
    sys.argv = [str(script), *args.arguments]
    sys.path.insert(0, str(BENCHMARKS_DIR))  # as `python benchmarks/NAME.py` would have it
    try:
        runpy.run_path(str(script), run_name="__main__")
    except SystemExit as exit_:
        return int(exit_.code or 0)
    finally:
        sys.argv, sys.path[:] = saved_argv, saved_path
    return 0
