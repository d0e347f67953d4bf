"""Reward-model training on real-world-shaped preference data: speed and accuracy.

The data is the HH-style stand-in (``router_training/reward/standin.py``: multi-turn
transcripts with the faults real sets have), or ``--data DIR`` holding ``train.jsonl`` and
``heldout.jsonl`` in the same shape. Usage:

    coe bench reward [--quick] [--data DIR] [--steps N]

1. **Phase-1 step time, in the same run**: the encoder and value head trained on the same pairs
   with the settings phase 1 had before (the pretrained attention dropout, batches of random
   pairs) and with today's (no attention dropout, batches of similar length), alternating
   rounds so that drift on a shared machine hits both alike. The figure is the ratio.
2. **The data as the job sees it**: rows skipped by ``--skip-invalid``, by reason, and pairs
   whose oldest turns were cut to fit the encoder's window.
3. **The whole job** (not in ``--quick``): ``coe train reward --skip-invalid`` with its
   defaults, timed, with each phase's seconds and both held-out accuracies against the goals
   (15 minutes; DMoERM ≥ 0.68 and ≥ the single-head baseline + 0.02).

Writes ``benchmarks/results/reward.json`` and ``reward.png``.
"""

from __future__ import annotations

import argparse
import json
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from _report import RESULTS_DIR, machine, save
from tqdm.auto import tqdm

GOAL_MINUTES = 15
GOAL_ACCURACY = 0.68
GOAL_LEAD = 0.02
SETTINGS = {"before": {"attention_dropout": None, "group_by_length": False}, "now": {"attention_dropout": 0.0, "group_by_length": True}}


def standin_data(folder: Path) -> Path:
    from router_training.reward.standin import write_standin

    write_standin(folder)
    return folder


def read_data(folder: Path) -> dict[str, Any]:
    """Both files read as ``--skip-invalid`` reads them, and cut to the window as training does."""
    from router_training.reward.data import load_pairs
    from router_training.reward.train import RewardTrainingArgs, fit_to_window, load_backbone

    args = RewardTrainingArgs()
    _, tokenizer, _ = load_backbone()
    result: dict[str, Any] = {}
    for name in ("train", "heldout"):
        loaded = load_pairs(folder / f"{name}.jsonl", max_skipped_share=args.max_skipped_share)
        pairs, truncated = fit_to_window(tokenizer, loaded.pairs, args.max_length)
        result[name] = {"pairs": pairs, "skipped": loaded.skipped.as_dict(), "truncated": truncated}
    return result


def step_seconds(pairs: list[Any], settings: dict[str, Any], steps: int, seed: int) -> float:
    """Seconds per phase-1 step (encoder and value head) with one configuration."""
    from router_training.reward.phases import train_value_head
    from router_training.reward.train import load_backbone
    from services.rewards.network import RewardNetwork
    from services.rewards.spec import GLOBAL_GROUP, RewardModelSpec

    encoder, tokenizer, reference = load_backbone(settings["attention_dropout"])
    network = RewardNetwork(encoder, RewardModelSpec(capabilities=(), aggregators=(GLOBAL_GROUP,), backbone=reference))
    trained = [param for name, param in network.encoder.named_parameters() if ".embeddings." not in name]
    for param in network.parameters():
        param.requires_grad_(False)
    for param in [*trained, *network.value_head.parameters()]:
        param.requires_grad_(True)
    groups = [{"params": trained, "lr": 5e-5}, {"params": list(network.value_head.parameters()), "lr": 1e-3}]
    report = train_value_head(
        network, tokenizer, pairs, [], adapter=None, head=network.value_head, groups=groups, epochs=100, batch_size=16,
        max_steps=steps, weight_decay=0.01, rng=random.Random(seed), evaluate_start=False,
        label=f"phase-1 steps, {'before' if settings is SETTINGS['before'] else 'now'}",
        group_by_length=settings["group_by_length"],
    )
    return report.seconds / report.steps


def compare_steps(pairs: list[Any], steps: int, rounds: int) -> dict[str, Any]:
    seconds: dict[str, list[float]] = {name: [] for name in SETTINGS}
    for round_index in range(rounds):
        for name, settings in SETTINGS.items():
            seconds[name].append(step_seconds(pairs, settings, steps, seed=round_index))
    mean = {name: sum(values) / len(values) for name, values in seconds.items()}
    return {"steps_per_round": steps, "rounds": rounds, "seconds_per_step": mean, "rounds_seconds": seconds,
            "speedup": mean["before"] / mean["now"]}


def whole_job(folder: Path, out: Path) -> dict[str, Any]:
    """``coe train reward --skip-invalid`` with its defaults, as a user runs it."""
    command = [str(Path(sys.executable).with_name("coe")), "train", "reward", "--data", str(folder / "train.jsonl"),
               "--eval-data", str(folder / "heldout.jsonl"), "--skip-invalid", "--out", str(out)]
    started = time.perf_counter()
    subprocess.run(command, check=True)
    minutes = (time.perf_counter() - started) / 60
    metrics = json.loads((out / "metrics.json").read_text(encoding="utf-8"))
    details = json.loads((out / "manifest.json").read_text(encoding="utf-8"))["metrics"]
    accuracy, baseline = metrics["pairwise_accuracy"], metrics["baseline_pairwise_accuracy"]
    return {
        "minutes": round(minutes, 2), "phase_seconds": details["phase_seconds"], "pairwise_accuracy": accuracy,
        "baseline_pairwise_accuracy": baseline, "per_category": metrics["per_category"],
        "baseline_per_category": details["baseline_per_category"], "capabilities_trained": metrics["capabilities_trained"],
        "goals": {
            f"finishes within {GOAL_MINUTES} minutes": minutes <= GOAL_MINUTES,
            f"DMoERM accuracy >= {GOAL_ACCURACY}": accuracy >= GOAL_ACCURACY,
            f"DMoERM >= baseline + {GOAL_LEAD}": accuracy >= baseline + GOAL_LEAD,
        },
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    job = summary.get("whole_job")
    figure, axes = plt.subplots(1, 2 if job else 1, figsize=(10 if job else 5, 4), squeeze=False)
    steps = summary["phase1_steps"]["seconds_per_step"]
    axes[0][0].bar(list(steps), list(steps.values()), color=["#999999", "#2b7bba"])
    axes[0][0].set_ylabel("seconds per phase-1 step (16 pairs)")
    axes[0][0].set_title(f"phase 1: {summary['phase1_steps']['speedup']:.2f}x faster")
    if job:
        phases = job["phase_seconds"]
        axes[0][1].barh(list(phases), [value / 60 for value in phases.values()], color="#2b7bba")
        axes[0][1].set_xlabel("minutes")
        axes[0][1].set_title(f"coe train reward: {job['minutes']:.1f} min, accuracy {job['pairwise_accuracy']:.3f} "
                             f"(baseline {job['baseline_pairwise_accuracy']:.3f})", fontsize=9)
    figure.tight_layout()
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Step times and the data only: no whole training job.")
    parser.add_argument("--data", type=Path, help="Folder with train.jsonl and heldout.jsonl (default: the stand-in, generated).")
    parser.add_argument("--steps", type=int, help="Phase-1 steps per round and setting (default 6; 3 with --quick).")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args()
    steps = args.steps or (3 if args.quick else 6)

    with tempfile.TemporaryDirectory(prefix="coe-bench-reward-") as scratch:
        folder = args.data or standin_data(Path(scratch) / "data")
        with tqdm(total=2 if args.quick else 3, desc="coe bench reward", unit="part") as progress:
            data = read_data(folder)
            progress.update()
            summary: dict[str, Any] = {
                "machine": machine(), "data": str(args.data or "stand-in (router_training/reward/standin.py)"),
                "files": {name: {key: value for key, value in part.items() if key != "pairs"} for name, part in data.items()},
            }
            summary["phase1_steps"] = compare_steps(data["train"]["pairs"], steps, rounds=2)
            progress.update()
            if not args.quick:
                summary["whole_job"] = whole_job(folder, Path(scratch) / "model")
                progress.update()
    save(args.out, "reward", summary, plot)
    steps_row = summary["phase1_steps"]
    print(f"phase-1 step: {steps_row['seconds_per_step']['before']:.2f} s before, {steps_row['seconds_per_step']['now']:.2f} s now "
          f"({steps_row['speedup']:.2f}x)")
    for name, part in summary["files"].items():
        print(f"{name}: skipped {part['skipped']['skipped']} of {part['skipped']['rows']} rows; "
              f"{part['truncated']['prompt_turns_dropped']} of {part['truncated']['pairs']} pairs lost their oldest turns")
    if "whole_job" in summary:
        job = summary["whole_job"]
        print(f"coe train reward: {job['minutes']:.1f} min; DMoERM {job['pairwise_accuracy']:.3f}, "
              f"baseline {job['baseline_pairwise_accuracy']:.3f}")
        for goal, met in job["goals"].items():
            print(f"  {goal}: {'met' if met else 'NOT met'}")


if __name__ == "__main__":
    main()
