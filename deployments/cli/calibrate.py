"""``coe calibrate --jsonl PROMPTS --expert NAME --share 0.3``: the λ that gives that share."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    calibrate = commands.add_parser("calibrate", help="Find the cost weight λ that sends a share of prompts to an expert.")
    calibrate.add_argument("--jsonl", type=Path, required=True, help='Prompts: {"text": ...} or {"messages": [...]} lines.')
    calibrate.add_argument("--expert", required=True, help="Expert whose share to set.")
    calibrate.add_argument("--share", type=float, required=True, help="Target share, 0..1.")
    calibrate.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    calibrate.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deployments.cli.route import load_router
    from router_training.router.calibrate import calibrate_cost_weight
    from router_training.router.data import read_examples

    if not 0.0 <= args.share <= 1.0:
        raise ValueError("--share must be between 0 and 1")
    router = load_router(args.config, None)
    if args.expert not in {ranked.expert for ranked in router.table.rank(router.artifact.manifest.taxonomy[0], 0.0)}:
        raise ValueError(f"expert {args.expert!r} is not in the router's score table")
    examples = read_examples(args.jsonl, router.artifact.manifest.taxonomy, require_category=False)
    queries = [router.prepare(example.messages) for example in examples]
    result = calibrate_cost_weight(router, queries, args.expert, args.share)
    print(f"cost_weight (λ) = {result.cost_weight:.6g} sends {result.share:.1%} of {len(queries)} prompts to {args.expert} (target {result.target:.1%})")
    if not router.table.crossings():
        print("note: λ changes nothing here: the candidate experts' costs do not differ where their scores do")
    return 0
