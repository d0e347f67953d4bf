"""``coe train ...``: training jobs (``router``, and ``splits`` to rebuild the router's data splits)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="Train router artifacts.")
    jobs = train.add_subparsers(dest="job", required=True, metavar="JOB")

    router = jobs.add_parser("router", help="Train the two-stage router from the seed splits (minutes on CPU).")
    router.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    router.add_argument("--data-dir", type=Path, help="Folder with train/calibration/test.jsonl.")
    router.add_argument("--missing", action="store_true", help="Do nothing when the store already serves a router.")
    router.add_argument("--no-activate", action="store_true", help="Publish without moving the `current` pointer.")
    router.add_argument("--report-dir", type=Path, default=Path("benchmarks/results"), help="Where the confusion matrix PNG goes.")
    router.set_defaults(run=run_router)

    mapping = jobs.add_parser("mapping", help="Score every expert per category with the reward model; publish the table.")
    mapping.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    mapping.add_argument("--data-dir", type=Path, help="Folder with calibration.jsonl (default: the seed splits).")
    mapping.add_argument("--reward-model", type=Path, help="Reward model directory (default: training.reward_model).")
    mapping.add_argument("--ray", choices=["auto", "on", "off"], default="auto", help="Generate on Ray actors (auto: if a cluster is reachable).")
    mapping.add_argument("--no-activate", action="store_true", help="Publish without moving the `current` pointer.")
    mapping.set_defaults(run=run_mapping)

    splits = jobs.add_parser("splits", help="Rebuild train/calibration/test.jsonl from the per-category seed files.")
    splits.add_argument("--config", help="App config YAML (for the taxonomy).")
    splits.add_argument("--seed", type=int, default=0)
    splits.set_defaults(run=run_splits)


def run_router(args: argparse.Namespace) -> int:
    from router_training.router.train import RouterTrainingArgs, train_router
    from services.artifacts import ArtifactError
    from services.config import load_config
    from services.router.store import RouterStore

    config = load_config(args.config)
    if config.router is None:
        raise ValueError("the config has no `router` section")
    store = RouterStore(Path(config.router.store))
    if args.missing:
        try:
            artifact = store.load_current()
            print(f"router {artifact.version} is current in {store.root}")
            return 0
        except ArtifactError:
            pass
    training = RouterTrainingArgs(data_dir=args.data_dir) if args.data_dir else RouterTrainingArgs()
    artifact = train_router(config, training, activate=not args.no_activate, report_dir=args.report_dir)
    test = artifact.manifest.metrics["test"]
    print(f"router {artifact.version} written to {artifact.folder}" + ("" if args.no_activate else " and made current"))
    print(f"test accuracy {test['accuracy']:.1%}; fallback rate {test['fallback_rate']:.1%}; τ={artifact.manifest.confidence_threshold:.3f}")
    for category, row in test["per_category"].items():
        print(f"  {category:<12} precision {row['precision']:.2f}  recall {row['recall']:.2f}  (n={row['support']})")
    return 0


def run_splits(args: argparse.Namespace) -> int:
    from router_training.router.data import DATA_DIR, SEED_DIR, make_splits
    from services.config import load_config
    from services.router.config import DEFAULT_CATEGORIES

    config = load_config(args.config)
    taxonomy = config.router.categories if config.router else DEFAULT_CATEGORIES
    print(json.dumps(make_splits(SEED_DIR, DATA_DIR, taxonomy, seed=args.seed)))
    return 0


def use_ray(choice: str) -> bool:
    """``auto``: use a Ray cluster when one is reachable (``ray job submit`` sets RAY_ADDRESS)."""
    import os

    if choice == "off":
        return False
    import ray

    if ray.is_initialized():
        return True
    if choice == "on" or os.environ.get("RAY_ADDRESS"):
        ray.init(address=os.environ.get("RAY_ADDRESS") or "auto")
        return True
    return False


def run_mapping(args: argparse.Namespace) -> int:
    from router_training.mapping.job import format_table, run_mapping as map_experts
    from router_training.router.data import DATA_DIR
    from services.config import load_config
    from services.rewards.model import RewardModel

    config = load_config(args.config)
    reward_model = RewardModel.load(args.reward_model or Path(config.training.reward_model))
    result = map_experts(
        config, reward_model, data_dir=args.data_dir or DATA_DIR, use_ray=use_ray(args.ray), activate=not args.no_activate
    )
    print(format_table(result, config.general_expert))
    assert result.artifact is not None
    print(f"router {result.artifact.version} written" + ("" if args.no_activate else " and made current"))
    return 0
