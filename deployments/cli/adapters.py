"""``coe adapters train``: train the default LoRA adapters named in the app config.
``coe adapters export-gguf``: convert the adapters of llama.cpp experts to GGUF LoRA adapters."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    adapters = commands.add_parser("adapters", help="Train the default LoRA adapters, or export them to GGUF.")
    actions = adapters.add_subparsers(dest="action", required=True, metavar="ACTION")
    train = actions.add_parser("train", help="Train adapters whose id has a recipe (math, code).")
    train.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    train.add_argument("--only", action="append", help="Expert name to train (repeatable; default: all with a recipe).")
    train.add_argument("--missing", action="store_true", help="Skip adapters that already exist.")
    train.add_argument("--epochs", type=int, default=2)
    train.add_argument("--seed", type=int, default=0)
    train.set_defaults(run=run)
    export = actions.add_parser(
        "export-gguf", help="Convert the PEFT adapters of llamacpp experts to GGUF LoRA adapters (in <adapter>/gguf/)."
    )
    export.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    export.add_argument("--missing", action="store_true", help="Only adapters without a valid, current export.")
    export.set_defaults(run=run_export)


def run_export(args: argparse.Namespace) -> int:
    from services.config import load_config
    from services.experts.config import LlamaCppExpert, LoRAExpert
    from services.experts.gguf_adapter import export_gguf_adapter, export_problem
    from services.experts.loading import check_adapter, locate_weights

    config = load_config(args.config)
    exported = 0
    for expert in config.experts:
        base = config.expert(expert.base) if isinstance(expert, LoRAExpert) else None
        if not isinstance(base, LlamaCppExpert):
            continue
        folder = check_adapter(expert)
        problem = export_problem(folder)
        if args.missing and problem is None:
            print(f"{expert.name}: GGUF export present and current")
            continue
        path = export_gguf_adapter(folder, locate_weights(base).weights_path)
        exported += 1
        print(f"{expert.name}: wrote {path}" + (f" ({problem})" if problem else ""))
    if not exported and not args.missing:
        print("no lora expert on a llamacpp base in this config; nothing to export")
    return 0


def run(args: argparse.Namespace) -> int:
    from router_training.adapters.recipes import RECIPES
    from services.artifacts import signing_key
    from services.config import load_config
    from services.experts.config import LOCAL_BASE_KINDS, LoRAExpert

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
        assert isinstance(base, LOCAL_BASE_KINDS)
        manifest = train_adapter(
            base, expert, recipe, LoRATrainingArgs(epochs=args.epochs, seed=args.seed), key=signing_key(config)
        )
        metrics = manifest.metrics
        print(
            f"{expert.name}: wrote {expert.path} (version {manifest.version}); held-out answers in format: "
            f"{metrics['held_out_format_rate']:.0%} (base model: {metrics['base_model_format_rate']:.0%})"
        )
    return 0
