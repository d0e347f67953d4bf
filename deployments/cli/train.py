"""``coe train ...``: the training jobs.

``all`` runs the whole pipeline (embedder → classifier → reward → mapping); ``embedder``,
``router``, ``reward`` and ``mapping`` run one stage each; ``splits`` rebuilds the router's splits.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from deployments.cli import reward


def register(commands: argparse._SubParsersAction) -> None:
    train = commands.add_parser("train", help="Train router artifacts.")
    jobs = train.add_subparsers(dest="job", required=True, metavar="JOB")

    router = jobs.add_parser("router", help="Train the two-stage router from the seed splits (a few minutes on CPU).")
    router.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    router.add_argument("--data-dir", type=Path, help="Folder with train/calibration/test.jsonl.")
    router.add_argument("--missing", action="store_true", help="Do nothing when the store already serves a router (but export its embedder to ONNX if it has no export).")
    router.add_argument("--no-activate", action="store_true", help="Publish without moving the `current` pointer.")
    router.add_argument("--report-dir", type=Path, default=Path("benchmarks/results"), help="Where the confusion matrix PNG and router_evaluation.json go.")
    router.add_argument("--embedder", choices=["dense", "frozen", "moe"], default="dense",
                        help="dense (default): fine-tune the embedder contrastively first, the ablation's best; frozen: the embedder as it ships.")
    router.add_argument("--epochs", type=float, help="Passes of the embedder fine-tuning over the training pairs (default 0.3: about 90 s on 2 cores).")
    router.set_defaults(run=run_router)

    mapping = jobs.add_parser("mapping", help="Score every expert per category (checks where they exist, else the reward model); publish the table.")
    mapping.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    mapping.add_argument("--data-dir", type=Path, help="Folder with calibration.jsonl (default: the seed splits).")
    mapping.add_argument("--reward-model", type=Path, help="Reward model directory (default: training.reward_model).")
    mapping.add_argument("--ray", choices=["auto", "on", "off"], default="auto", help="Generate on Ray actors (auto: if a cluster is reachable).")
    mapping.add_argument("--no-activate", action="store_true", help="Publish without moving the `current` pointer.")
    mapping.add_argument("--force-activate", action="store_true", help="Make it current even if it routes the held-out verifiable prompts worse than the current router.")
    mapping.set_defaults(run=run_mapping)

    embedder = jobs.add_parser("embedder", help="Fine-tune the router embedder contrastively (dense and/or MoE) and print the ablation.")
    embedder.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    embedder.add_argument("--data-dir", type=Path, help="Folder with train/calibration/test.jsonl (default: the seed splits).")
    embedder.add_argument("--out", type=Path, required=True, help="Folder receiving one model directory per variant and ablation.json.")
    embedder.add_argument("--variant", choices=["dense", "moe", "both"], default="both")
    embedder.add_argument("--moe-layers", type=int, nargs="+", help="Encoder layers whose feed-forward becomes experts (default: 3).")
    embedder.add_argument("--epochs", type=float, help="Passes over the training pairs (default 1).")
    embedder.add_argument("--max-steps", type=int, help="Stop after this many optimiser steps.")
    embedder.set_defaults(run=run_embedder)

    pipeline = jobs.add_parser("all", help="The whole pipeline: embedder → classifier → reward → mapping, with a report.")
    pipeline.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    pipeline.add_argument("--data", type=Path, help="Folder with router/{train,calibration,test}.jsonl and reward/{train,heldout}.jsonl (default: the shipped seed data).")
    pipeline.add_argument("--out", type=Path, required=True, help="Report directory: metrics.json, PNG charts, trained embedders.")
    pipeline.add_argument("--reward-out", type=Path, help="Where the reward model goes (default: the config's training.reward_model).")
    pipeline.add_argument("--reward-model", type=Path, help="Use this trained reward model instead of training one (the slowest stage), e.g. after a change to the router data only.")
    pipeline.add_argument("--ray", choices=["auto", "on", "off"], default="auto", help="Generate the mapping answers on Ray actors (auto: if a cluster is reachable).")
    pipeline.add_argument("--no-activate", action="store_true", help="Publish without moving the `current` pointer.")
    pipeline.add_argument("--force-activate", action="store_true", help="Make it current even if it routes the held-out verifiable prompts worse than the current router.")
    pipeline.add_argument("--quick", action="store_true", help="Smoke test: a few optimiser steps per model (minutes less, much worse models).")
    pipeline.add_argument("--skip-invalid", action="store_true", help="Skip reward rows that fail validation (counted by reason in the reward metrics) instead of stopping at the first.")
    pipeline.set_defaults(run=run_all)

    reward.register_train(jobs)

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
    store = RouterStore.from_config(config)
    if args.missing:
        try:
            artifact = store.load_current()
        except ArtifactError:
            pass
        else:
            print(f"router {artifact.version} is current in {store.root}")
            if config.router.embedding_backend == "onnx":
                from router_training.embedder.onnx_export import add_onnx_export

                exported = add_onnx_export(store.root, artifact, key=store.key)
                if exported is not None:
                    store.use(exported.version)
                    print(f"router {exported.version}: {artifact.version} with its embedder exported to int8 ONNX, made current")
            return 0
    from router_training.embedder.train import EmbedderTrainingArgs

    training = RouterTrainingArgs(data_dir=args.data_dir) if args.data_dir else RouterTrainingArgs()
    artifact, _ = train_router(
        config, training, embedder_variant=args.embedder, embedder_args=embedder_args(args, base=EmbedderTrainingArgs.budget()),
        activate=not args.no_activate, report_dir=args.report_dir,
    )
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
    from services.artifacts import signing_key
    from services.config import load_config
    from services.rewards.model import RewardModel

    config = load_config(args.config)
    reward_model = RewardModel.load(args.reward_model or Path(config.training.reward_model), key=signing_key(config))
    result = map_experts(
        config, reward_model, data_dir=args.data_dir or DATA_DIR, use_ray=use_ray(args.ray), activate=not args.no_activate,
        force_activate=args.force_activate,
    )
    print(format_table(result, config.general_expert))
    return 0


def embedder_args(args: argparse.Namespace, *, quick: bool = False, base: Any = None) -> Any:
    """Embedder hyper-parameters: ``base`` (default: the job's defaults) with the flags given."""
    import dataclasses

    from router_training.embedder.train import EmbedderTrainingArgs

    values: dict[str, Any] = {"max_steps": 2} if quick else {}
    for flag, name in (("moe_layers", "moe_layers"), ("epochs", "epochs"), ("max_steps", "max_steps")):
        if getattr(args, flag, None) is not None:
            values[name] = tuple(getattr(args, flag)) if flag == "moe_layers" else getattr(args, flag)
    return dataclasses.replace(base or EmbedderTrainingArgs(), **values)


def run_embedder(args: argparse.Namespace) -> int:
    from router_training.embedder.train import train_embedder
    from router_training.pipeline.ablation import format_ablation, run_ablation
    from router_training.router.data import DATA_DIR
    from router_training.router.train import Splits
    from services.artifacts import signing_key, write_json_atomic
    from services.config import load_config

    config = load_config(args.config)
    if config.router is None:
        raise ValueError("the config has no `router` section")
    router = config.router
    splits = Splits.read(args.data_dir or DATA_DIR, router.categories)
    training = embedder_args(args)
    variants = ["dense", "moe"] if args.variant == "both" else [args.variant]
    key = signing_key(config)
    trained = {
        variant: train_embedder(
            router.embedder, router.categories, splits.examples["train"], args.out / variant, variant, training, key=key
        )
        for variant in variants
    }
    for variant, folder in trained.items():
        print(f"{variant} embedder written to {folder}")
    ablation = run_ablation(splits, router, trained)
    write_json_atomic(args.out / "ablation.json", {"rows": ablation.rows, "chosen": ablation.chosen})
    print(format_ablation(ablation.rows))
    return 0


def run_all(args: argparse.Namespace) -> int:
    from router_training.embedder.train import EmbedderTrainingArgs
    from router_training.pipeline.run import DATA_ROOT, PipelineArgs, train_all
    from router_training.reward.train import RewardTrainingArgs
    from services.config import load_config

    config = load_config(args.config)
    pipeline = PipelineArgs(
        out=args.out,
        data=args.data or DATA_ROOT,
        reward_out=args.reward_out,
        reward_model=args.reward_model,
        embedder=embedder_args(args, quick=args.quick, base=EmbedderTrainingArgs.budget()),
        reward=(RewardTrainingArgs.quick() if args.quick else RewardTrainingArgs.budget()).model_copy(
            update={"skip_invalid": args.skip_invalid}
        ),
        use_ray=use_ray(args.ray),
        activate=not args.no_activate,
        force_activate=args.force_activate,
    )
    result = train_all(config, pipeline)
    print(f"router {result.artifact.version}: {result.metrics['activation']['why']}")
    print(f"report: {result.report_dir}")
    print("stage seconds: " + ", ".join(f"{name} {seconds:.0f}" for name, seconds in result.seconds.items()))
    return 0
