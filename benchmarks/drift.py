"""Drift benchmark: DriftMoE on synthetic drift streams, and a routing drift simulation.

    coe bench drift [--quick] --out DIR        (or: python benchmarks/drift.py [--quick] --out DIR)

1. Prequential (test-then-train) accuracy and instances/s of the DriftMoE classifier (12 trees,
   top-k 3 as in the paper, with the stream settings of ``STREAM_DRIFTMOE``) against river's ``ARFClassifier`` (10 trees) and
   ``HoeffdingAdaptiveTreeClassifier``, on six streams from ``river.datasets.synth``, each with
   three drift points made by nesting ``ConceptDriftStream``: SEA and LED with abrupt and gradual
   drifts, and RandomRBF with moderate and fast centroid drift.
2. Routing drift simulation (``_routing_drift_sim``): three LLM experts, eight categories; at
   event T the best expert of two categories changes. The static router's regret next to the
   online learner's, and the events the learner needs to recover; the same for a contextual
   bandit (river's LinUCB) beside it, under clean, noisy (10% of outcomes flipped), sparse (5% of
   requests) and delayed (200 events) feedback.

Writes ``DIR/drift.json``, ``DIR/drift_series.json``, ``DIR/routing_drift.png`` and, per stream,
``DIR/drift_<stream>.png``: accuracy over time for the three learners, DriftMoE's expert usage by
the gate and each expert's own accuracy (``_drift_curves``). Full mode uses 100k instances per
stream; ``--quick`` uses 20k.
"""

from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing
import os
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any

import torch
from river import forest, tree
from river.datasets import base as datasets_base
from river.datasets import synth
from tqdm.auto import tqdm

from services.learner.config import DriftMoESettings
from services.learner.driftmoe import DriftMoE
from services.learner.river_adapter import DriftMoEClassifier

try:  # run as a script (benchmarks/ on sys.path, as `coe bench` does)
    from _drift_curves import StreamCurves, plot_stream
    from _routing_drift_sim import FEEDBACK_MODES, POLICIES, RoutingSimResult, plot_routing_sim, run_routing_sim
except ModuleNotFoundError:  # imported as benchmarks.drift from the project root
    from benchmarks._drift_curves import StreamCurves, plot_stream
    from benchmarks._routing_drift_sim import FEEDBACK_MODES, POLICIES, RoutingSimResult, plot_routing_sim, run_routing_sim

STREAMS = ("sea_abrupt", "sea_gradual", "led_abrupt", "led_gradual", "rbf_moderate", "rbf_fast")
FULL_INSTANCES = 100_000
QUICK_INSTANCES = 20_000
GRADUAL_WIDTH_SHARE = 0.05  # a gradual drift spreads over 5% of the stream
RBF_SPEEDS = {"rbf_moderate": 1e-4, "rbf_fast": 1e-3}  # the usual RBF_m / RBF_f centroid speeds
# The paper's router and tree count (12 trees, top-k 3, batch 256), with the three settings that
# make it learn and forget on streams of 20k-100k instances (docs/learner.md): trees that split
# sooner (split confidence 0.01, river's ARF default), Poisson(6) instance weights, a per-tree
# drift detector, and the router-weighted vote of the top-k trees.
STREAM_DRIFTMOE = DriftMoESettings(
    n_trees=12, top_k=3, use_adwin=False, split_confidence=0.01, tree_poisson_lambda=6.0, tree_drift_delta=0.001,
    prediction="topk",
)
MODELS: dict[str, Callable[[int], Any]] = {
    "driftmoe": lambda seed: DriftMoEClassifier(STREAM_DRIFTMOE.model_copy(update={"seed": seed})),
    "arf": lambda seed: forest.ARFClassifier(n_models=10, seed=seed),
    "hat": lambda seed: tree.HoeffdingAdaptiveTreeClassifier(seed=seed),
}


def abrupt_width(segment: int) -> int:
    """The narrowest transition river's ConceptDriftStream can compute.

    It draws from the new concept with probability ``1 / (1 + exp(-4 (t - position) / width))``
    and ``math.exp`` overflows for an argument above ~709, so width 1 only works for positions
    below ~177. This width keeps the argument under 700: a switch over ~0.15% of the stream.
    """
    return max(1, math.ceil(4 * segment / 700))


def chain_concepts(concepts: list[datasets_base.SyntheticDataset], segment: int, width: int, seed: int) -> datasets_base.SyntheticDataset:
    """Concepts one after another, each drift ``segment`` instances after the previous one.

    A nested stream counts only the instances it yields, so each inner position is relative to
    where the previous drift handed over.
    """
    stream = concepts[-1]
    for index in reversed(range(len(concepts) - 1)):
        stream = synth.ConceptDriftStream(concepts[index], stream, position=segment, width=width, seed=seed + index)
    return stream


def build_stream(name: str, n_instances: int, seed: int) -> datasets_base.SyntheticDataset:
    """One of ``STREAMS``, with drifts at 1/4, 1/2 and 3/4 of ``n_instances``."""
    segment = n_instances // 4
    width = abrupt_width(segment) if name.endswith(("_abrupt", "_moderate", "_fast")) else int(GRADUAL_WIDTH_SHARE * n_instances)
    if name.startswith("sea_"):
        concepts = [synth.SEA(variant=variant, noise=0.1, seed=seed + variant) for variant in range(4)]
    elif name.startswith("led_"):
        concepts = [
            synth.LEDDrift(seed=seed + index, noise_percentage=0.1, irrelevant_features=True, n_drift_features=n_drift)
            for index, n_drift in enumerate((1, 3, 5, 7))
        ]
    elif name in RBF_SPEEDS:
        # New centroids at each drift point, and centroids that keep moving in between.
        concepts = [
            synth.RandomRBFDrift(
                seed_model=seed + index,
                seed_sample=seed + 100 + index,
                n_classes=5,
                n_features=10,
                n_centroids=50,
                change_speed=RBF_SPEEDS[name],
                n_drift_centroids=50,
            )
            for index in range(4)
        ]
    else:
        raise ValueError(f"unknown stream {name!r}; choose one of {', '.join(STREAMS)}")
    return chain_concepts(concepts, segment, width, seed)


def prequential(model: Any, data: list[tuple[dict, Any]], description: str, curves: StreamCurves | None = None) -> tuple[list[bool], float]:
    """Test-then-train outcomes and instances/s (the stream is generated beforehand, so only the model is timed).

    With ``curves``, a DriftMoE's gate and trees are read between the test and the train step,
    outside the timed part.
    """
    outcomes: list[bool] = []
    timed = 0.0
    for x, y in tqdm(data, desc=description, mininterval=0.5, leave=False, position=_bar_position):
        started = time.perf_counter()
        outcomes.append(model.predict_one(x) == y)
        timed += time.perf_counter() - started
        if curves is not None:
            curves.observe_experts(*model.experts_one(x), y)
        started = time.perf_counter()
        model.learn_one(x, y)
        timed += time.perf_counter() - started
    return outcomes, len(data) / timed


def run_stream(name: str, n_instances: int, seed: int) -> dict[str, Any]:
    """One stream, every model in turn on the same instances (so they share a core and its timings)."""
    data = list(build_stream(name, n_instances, seed).take(n_instances))
    accuracy: dict[str, float] = {}
    per_second: dict[str, float] = {}
    curves = StreamCurves(len(data), STREAM_DRIFTMOE.n_trees)
    for model_name, make in MODELS.items():
        outcomes, instances_per_s = prequential(make(seed), data, f"{name} {model_name}", curves if model_name == "driftmoe" else None)
        curves.learner_accuracy(model_name, outcomes)
        accuracy[model_name] = round(sum(outcomes) / len(outcomes), 4)
        per_second[f"{model_name}_ips"] = round(instances_per_s, 1)
    return accuracy | per_second | {"curves": curves.as_dict()}


def run_sim(quick: bool, seed: int, policy: str = "driftmoe", feedback: str = "clean") -> RoutingSimResult:
    return run_routing_sim(quick=quick, seed=seed, bar_position=_bar_position, policy=policy, feedback=FEEDBACK_MODES[feedback])


def _cost_rank(name: str) -> int:
    return ("led_", "rbf_", "sea_").index(name[:4])


_bar_position = 1  # the line of this process's progress bar, under the overall bar


def prepare_process(worker_counter: Any = None) -> None:
    """Settings every process that times a model needs; a worker also takes a progress-bar line of its own."""
    global _bar_position
    if worker_counter is not None:
        with worker_counter.get_lock():
            worker_counter.value += 1
            _bar_position = worker_counter.value
    torch.set_num_threads(1)  # one-row forward passes: threads only add overhead, and would compete across jobs
    DriftMoE(1)  # Adam's first construction imports torch._dynamo (seconds): do it outside the timed loops


def default_jobs() -> int:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, min(cores, len(STREAMS) + 1))


def run_tasks(tasks: dict[str, functools.partial], jobs: int) -> dict[str, Any]:
    """Run independent tasks, ``jobs`` at a time, each in a process of its own (river is pure Python: one core each).

    Workers are forked, so they see the functions however this module was imported; where
    fork is unavailable the tasks run one after another.
    """
    if jobs <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        return {name: task() for name, task in tqdm(tasks.items(), desc="drift benchmark")}
    context = multiprocessing.get_context("fork")
    tqdm.get_lock()  # created before the fork, so that the workers' bars share it
    counter = context.Value("i", 0)
    results: dict[str, Any] = {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=context, initializer=prepare_process, initargs=(counter,)) as pool:
        futures = {pool.submit(task): name for name, task in tasks.items()}
        for future in tqdm(as_completed(futures), total=len(futures), desc="drift benchmark"):
            results[futures[future]] = future.result()
    return results


def run_drift_benchmark(
    out: Path, quick: bool, seed: int = 42, jobs: int | None = None, instances: int | None = None,
    feedback_modes: tuple[str, ...] | None = None,
) -> dict[str, Any]:
    """Run both parts, write ``out/drift.json`` (plus series and plot), print a table, return the summary.

    ``jobs`` (default: one per core, at most one per task) runs the streams and the routing
    simulation side by side; each model's instances/s is then measured on one busy core.
    ``instances`` overrides the stream length that ``quick`` picks (for smoke runs);
    ``feedback_modes`` limits the routing simulation to those kinds of feedback (``clean`` is always run).
    """
    prepare_process()
    out.mkdir(parents=True, exist_ok=True)
    jobs = jobs or default_jobs()
    n_instances = instances or (QUICK_INSTANCES if quick else FULL_INSTANCES)
    if n_instances < 400:
        raise ValueError(f"instances must be at least 400 (four concepts of 100), got {n_instances}")
    # Slowest first (LED's 24 features make river's naive Bayes leaves the costliest), so jobs end together.
    tasks = {name: functools.partial(run_stream, name, n_instances, seed) for name in sorted(STREAMS, key=_cost_rank)}
    modes = [mode for mode in FEEDBACK_MODES if feedback_modes is None or mode in feedback_modes or mode == "clean"]
    for policy in POLICIES:
        for mode in modes:
            tasks[f"routing_sim:{policy}:{mode}"] = functools.partial(run_sim, quick=quick, seed=seed, policy=policy, feedback=mode)
    started = time.perf_counter()
    results = run_tasks(tasks, jobs)
    elapsed = time.perf_counter() - started
    sim: RoutingSimResult = results["routing_sim:driftmoe:clean"]
    bandit: RoutingSimResult = results["routing_sim:bandit:clean"]
    curves = {name: results[name].pop("curves") for name in STREAMS}
    streams = {name: results[name] for name in STREAMS}
    for name, stream_curves in curves.items():
        plot_stream(name, stream_curves, n_instances, out / f"drift_{name}.png")
    feedback = {mode: {policy: results[f"routing_sim:{policy}:{mode}"].figures() for policy in POLICIES} for mode in modes}
    summary: dict[str, Any] = {
        "streams": streams,
        "routing_sim": {
            "recovery_events": sim.recovery_events, "static_regret": sim.static_regret, "online_regret": sim.online_regret,
            "bandit_recovery_events": bandit.recovery_events, "feedback": feedback,
        },
    }
    write_json_atomically(out / "drift.json", summary)
    write_json_atomically(out / "drift_series.json", {**sim.series(), "bandit_regret": bandit.series()["online_regret"], "streams": curves})
    plot_routing_sim(sim, out / "routing_drift.png", bandit=bandit)
    print(format_table(streams, sim, n_instances))
    print(format_feedback(feedback))
    print(f"\n{elapsed:.0f} s with {jobs} job(s); wrote {out / 'drift.json'}, {out / 'drift_series.json'}, {out / 'routing_drift.png'} "
          f"and {out / 'drift_<stream>.png'}")
    return summary


def write_json_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Readers see the old file or the new one, never half of one."""
    handle = tempfile.NamedTemporaryFile("w", dir=path.parent, prefix=f".{path.name}.", suffix=".tmp", delete=False, encoding="utf-8")
    try:
        with handle:
            json.dump(payload, handle, indent=2)
            handle.write("\n")
        os.chmod(handle.name, 0o644)  # NamedTemporaryFile makes it private; results are for everyone to read
        os.replace(handle.name, path)
    except BaseException:
        Path(handle.name).unlink(missing_ok=True)
        raise


def format_table(streams: dict[str, dict[str, float]], sim: RoutingSimResult, n_instances: int) -> str:
    lines = [
        f"\nprequential accuracy and instances/s, {n_instances:,} instances per stream",
        f"{'stream':<14}{'DriftMoE':>10}{'ARF':>8}{'HAT':>8}  {'DriftMoE/s':>11}{'ARF/s':>9}{'HAT/s':>9}",
    ]
    for name, row in streams.items():
        lines.append(
            f"{name:<14}{row['driftmoe']:>10.4f}{row['arf']:>8.4f}{row['hat']:>8.4f}  "
            f"{row['driftmoe_ips']:>11.0f}{row['arf_ips']:>9.0f}{row['hat_ips']:>9.0f}"
        )
    recovery = "never (null)" if sim.recovery_events is None else f"{sim.recovery_events} events"
    sustained = "never" if sim.sustained_recovery_events is None else f"{sim.sustained_recovery_events} events"
    lines += [
        f"\nrouting drift simulation: {sim.n_events:,} events, best expert of 2/8 categories changes at T = {sim.drift_at:,}",
        f"regret over the last {sim.window} events: static {sim.static_regret:.2f}, online {sim.online_regret:.2f}",
        f"online recovery to regret <= {sim.recovery_threshold:.2f}: {recovery} (staying there to the end: {sustained})",
        f"drifts ADWIN detected in the online learner: {sim.drifts_detected}",
    ]
    return "\n".join(lines)


def format_feedback(feedback: dict[str, dict[str, dict[str, Any]]]) -> str:
    """Recovery (events after T to regret <= 0.10) and regret before T, per feedback mode and policy."""
    lines = ["\nrouting sim under realistic feedback: recovery events (sustained) / regret before T / at the end"]
    for mode, row in feedback.items():
        cells = [
            f"{policy} {figures['recovery_events']} ({figures['sustained_recovery_events']}) / "
            f"{figures['pre_drift_regret']:.2f} / {figures['final_regret']:.2f}"
            for policy, figures in row.items()
        ]
        lines.append(f"{mode:<13}" + "   ".join(cells))
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help=f"{QUICK_INSTANCES:,} instances per stream instead of {FULL_INSTANCES:,}.")
    parser.add_argument("--out", type=Path, required=True, help="Directory for drift.json, drift_series.json and routing_drift.png.")
    parser.add_argument("--seed", type=int, default=42)
    parser.add_argument("--jobs", type=int, default=None, help="Processes side by side (default: one per core, at most 7).")
    parser.add_argument("--instances", type=int, default=None, help="Instances per stream, overriding --quick (smoke runs).")
    args = parser.parse_args(argv)
    run_drift_benchmark(args.out, args.quick, seed=args.seed, jobs=args.jobs, instances=args.instances)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
