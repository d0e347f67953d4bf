"""``coe train reward`` and ``coe score``: the DMoERM reward model's training job and scorer.

``coe train reward`` trains on one preference file, evaluates on another and writes the model
directory (``manifest.json``, ``config.json``, ``weights.safetensors``, ``encoder/``,
``metrics.json``). Pairs without a ``category`` are categorised by the config's stage-1
router; with no router trained, they all fall in the ``global`` group.

``coe score --prompt P --response R`` prints the reward and the per-capability scores as JSON.
Without ``--category``, the stage-1 router picks the category when one is available, else the
``global`` aggregator scores the pair.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
from pathlib import Path
from typing import Any, Callable

logger = logging.getLogger(__name__)


def register_train(jobs: argparse._SubParsersAction) -> None:
    """Add the ``reward`` job to ``coe train``."""
    reward = jobs.add_parser("reward", help="Train the DMoERM reward model (a few minutes on CPU).")
    reward.add_argument("--data", type=Path, help="Training preference JSONL (default: the shipped train.jsonl).")
    reward.add_argument("--eval-data", type=Path, help="Evaluation JSONL, used for reporting only (default: heldout.jsonl).")
    reward.add_argument("--out", type=Path, help="Model directory (default: the config's training.reward_model).")
    reward.add_argument("--config", help="App config YAML: taxonomy and stage-1 router (default: $COE_CONFIG or configs/default.yaml).")
    reward.add_argument("--hparams", type=Path, help="YAML or JSON mapping of training hyper-parameters to override.")
    reward.add_argument("--steps-scale", type=float, help="Multiply the epochs of phases 1 and 2 (e.g. 0.5 for a faster run).")
    reward.add_argument("--quick", action="store_true", help="Smoke test: a small data sample and two steps per phase.")
    reward.add_argument(
        "--budget", action="store_true", help="The lighter settings of `coe train all` (640 pairs, one phase-1 epoch): minutes, not ten."
    )
    reward.add_argument("--seed", type=int, help="Random seed (default 0).")
    reward.add_argument("--threads", type=int, help="torch intra-op threads.")
    reward.add_argument("--missing", action="store_true", help="Do nothing when a reward model already loads from --out.")
    reward.add_argument(
        "--skip-invalid", action="store_true",
        help="Skip rows that fail validation, counted by reason in metrics.json, instead of stopping at the first "
        "(the job still stops when more than max_skipped_share, default 20%%, of a file is invalid).",
    )
    reward.add_argument(
        "--max-minutes", type=float,
        help="Training budget: stop at the best state reached so far when it runs out (metrics.json says where).",
    )
    reward.set_defaults(run=run_train)


def register_score(commands: argparse._SubParsersAction) -> None:
    """Add the top-level ``score`` command."""
    score = commands.add_parser("score", help="Score a (prompt, response) pair with the reward model.")
    score.add_argument("--prompt", required=True, help="The user prompt.")
    score.add_argument("--response", required=True, help="The response to score.")
    score.add_argument("--model", type=Path, help="Reward model directory (default: the config's training.reward_model).")
    score.add_argument("--category", help="Category whose aggregator scores the pair ('global' for the shared one).")
    score.add_argument("--config", help="App config YAML, for the stage-1 router (default: $COE_CONFIG or configs/default.yaml).")
    score.set_defaults(run=run_score)


def training_args(args: argparse.Namespace) -> Any:
    """:class:`RewardTrainingArgs` from ``--quick``/``--hparams`` and the flags that override them."""
    import yaml

    from router_training.reward.train import RewardTrainingArgs

    values: dict[str, Any] = {}
    if args.quick:
        values = RewardTrainingArgs.quick().model_dump()
    elif getattr(args, "budget", False):
        values = RewardTrainingArgs.budget().model_dump()
    if args.hparams is not None:
        try:
            loaded = yaml.safe_load(args.hparams.read_text(encoding="utf-8"))
        except yaml.YAMLError as exc:
            raise ValueError(f"{args.hparams} is not valid YAML/JSON: {exc}") from exc
        if not isinstance(loaded, dict):
            raise ValueError(f"{args.hparams}: the top level must be a mapping of hyper-parameters")
        values.update(loaded)
    for flag, field in (("steps_scale", "steps_scale"), ("seed", "seed"), ("threads", "torch_threads"),
                        ("max_minutes", "max_minutes")):
        if getattr(args, flag, None) is not None:
            values[field] = getattr(args, flag)
    if getattr(args, "skip_invalid", False):
        values["skip_invalid"] = True
    try:
        return RewardTrainingArgs.model_validate(values)
    except ValueError as exc:
        raise ValueError(f"invalid reward training hyper-parameters ({args.hparams or 'flags'}):\n{exc}") from exc


def router_categorize(config_path: str | None) -> Callable[[list[str]], list[str]]:
    """The stage-1 router as ``categorize(prompts)``, loaded on first use; ``global`` without one."""
    from services.rewards.spec import GLOBAL_GROUP

    state: dict[str, Any] = {}

    def categorize(prompts: list[str]) -> list[str]:
        if "router" not in state:
            state["router"] = _load_router(config_path)
        router = state["router"]
        if router is None:
            return [GLOBAL_GROUP] * len(prompts)
        decisions = router.decide([router.prepare([{"role": "user", "content": text}]) for text in prompts])
        return [decision.category for decision in decisions]

    return categorize


def _load_router(config_path: str | None) -> Any:
    from deployments.cli.route import load_router
    from services.errors import CoeError

    try:
        return load_router(config_path, None)
    except (CoeError, ValueError, OSError) as exc:
        logger.warning("no stage-1 router available (%s); uncategorised pairs use the 'global' aggregator", exc)
        return None


def _loads(folder: Path, key: bytes | None) -> bool:
    """Whether a complete, verified reward model is at ``folder`` (a partial or unsigned one is retrained)."""
    from services.artifacts import ArtifactError
    from services.rewards.model import RewardModel

    if not folder.exists():
        return False
    try:
        RewardModel.load(folder, key=key)
    except (ArtifactError, OSError) as exc:
        logger.warning("the reward model at %s does not load (%s); training a new one", folder, exc)
        return False
    return True


def run_train(args: argparse.Namespace) -> int:
    from router_training.reward.data import HELDOUT_PATH, TRAIN_PATH
    from router_training.reward.train import train_reward_model
    from services.artifacts import signing_key
    from services.config import load_config
    from services.router.config import DEFAULT_CATEGORIES

    config = load_config(args.config)
    key = signing_key(config)  # before training: a key the config names but the environment lacks stops us here
    taxonomy = config.router.categories if config.router else DEFAULT_CATEGORIES
    out = args.out or Path(config.training.reward_model)
    if args.missing and _loads(out, key):
        print(f"reward model present at {out}; nothing to do")
        return 0
    metrics = train_reward_model(
        out,
        training_args(args),
        train_path=args.data or TRAIN_PATH,
        eval_path=args.eval_data or HELDOUT_PATH,
        taxonomy=tuple(taxonomy),
        categorize=router_categorize(args.config),
        key=key,
    )
    print(f"reward model written to {out.resolve()} in {metrics['seconds']:.0f} s")
    if metrics["stopped_early"]:
        print(f"stopped early: the {metrics['stopped_early']['max_minutes']}-minute budget ran out in "
              f"{metrics['stopped_early']['in']}; the model keeps the best states reached")
    for split, row in metrics["truncated"].items():
        if row["prompt_turns_dropped"]:
            print(f"{split}: {row['prompt_turns_dropped']} of {row['pairs']} pairs lost their oldest turns to the "
                  f"encoder's window ({row['final_turn_cut']} also the middle of their final turn)")
    if metrics["capabilities_without_data"]:
        print(f"no pairs for capabilities {', '.join(metrics['capabilities_without_data'])}: no adapters for them")
    print(
        f"held-out pairwise accuracy {metrics['pairwise_accuracy']:.1%} "
        f"(single-head baseline {metrics['baseline_pairwise_accuracy']:.1%}, n={metrics['n_eval']})"
    )
    for category, row in metrics["per_category"].items():
        print(f"  {category:<12} {row['pairwise_accuracy']:.1%}  (n={row['n']})")
    checked = metrics.get("verifiable_heldout")
    if checked:
        print(f"right over wrong answers to held-out verifiable tasks: {checked['pairwise_accuracy']:.1%} (n={checked['n']})")
        for category, row in checked["per_category"].items():
            print(f"  {category:<12} {row['pairwise_accuracy']:.1%}  (n={row['n']})")
    return 0


def run_score(args: argparse.Namespace) -> int:
    from services.artifacts import signing_key
    from services.config import load_config
    from services.rewards.model import RewardModel

    config = load_config(args.config)
    model = RewardModel.load(args.model or Path(config.training.reward_model), key=signing_key(config))
    category = args.category
    if category is None:
        category = router_categorize(args.config)([args.prompt])[0]
    [score] = model.score([args.prompt], [args.response], [category])
    json.dump({**score.model_dump(mode="json"), "model": model.version}, sys.stdout, indent=2)
    print()
    return 0
