"""``coe adapters train``: train the default LoRA adapters named in the app config."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    adapters = commands.add_parser("adapters", help="Train the default LoRA adapters.")
    actions = adapters.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="Train adapters whose id has a recipe (math, code).")
    train.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    train.add_argument("--only", action="append", help="Expert name to train (repeatable; default: all with a recipe).")
    train.add_argument("--missing", action="store_true", help="Skip adapters that already exist.")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from router_training.adapters.recipes import RECIPES
    from services.artifacts import signing_key
    from services.config import load_config
    from services.experts.config import GGUFExpert, HFExpert, LoRAExpert

    config = load_config(args.config)
    lora_experts = [expert for expert in config.experts if isinstance(expert, LoRAExpert)]
    if args.only:
        unknown = sorted(set(args.only) - {expert.name for expert in lora_experts})
        if unknown:
            raise ValueError(f"--only names no lora expert in the config: {unknown}")
        lora_experts = [expert for expert in lora_experts if expert.name in args.only]
    for expert in lora_experts:
        recipe = RECIPES.get(expert.short_id)
        if recipe is None:
            print(f"{expert.name}: no training recipe for adapter id '{expert.short_id}'; left as is")
            continue
        if args.missing and (Path(expert.path) / "adapter_model.safetensors").is_file():
            print(f"{expert.name}: present at {expert.path}")
            continue
        from router_training.adapters.train import LoRATrainingArgs, train_adapter

        if not recipe.data_path.is_file():
            from router_training.adapters.recipes import SEED_DATA_DIR
            from router_training.adapters.seed_data import write_seed_data

            write_seed_data(SEED_DATA_DIR)
            print(f"wrote seed data to {SEED_DATA_DIR}")

        base = config.expert(expert.base)
        assert isinstance(base, (HFExpert, GGUFExpert))
        manifest = train_adapter(
            base, expert, recipe, LoRATrainingArgs(epochs=args.epochs, seed=args.seed), key=signing_key(config)
        )
        metrics = manifest.metrics
        print(
            f"{expert.name}: wrote {expert.path} (version {manifest.version}); held-out answers in format: "
            f"{metrics['held_out_format_rate']:.0%} (base model: {metrics['base_model_format_rate']:.0%})"
        )
    return 0
