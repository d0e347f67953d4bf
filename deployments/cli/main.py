"""``coe`` entry point. Subcommands register themselves; heavy imports happen only when run."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Callable, Sequence

from deployments.cli import (
    adapters,
    bench,
    cache,
    calibrate,
    config_render,
    feedback,
    keys,
    learner,
    reward,
    route,
    router_store,
    serve_command,
    train,
    weights,
)
from services.errors import CoeError

SUBCOMMANDS: tuple[Callable[[argparse._SubParsersAction], None], ...] = (
    serve_command.register,
    route.register,
    train.register,
    reward.register_score,
    router_store.register,
    calibrate.register,
    cache.register,
    feedback.register,
    keys.register,
    learner.register,
    adapters.register,
    config_render.register,
    weights.register,
    bench.register,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coe", description="coe-router: Composition-of-Experts routing service.")
    parser.add_argument("--log-level", default="INFO", help="Python log level (default: INFO).")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for register in SUBCOMMANDS:
        register(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        return int(args.run(args) or 0)
    except (CoeError, ValueError, OSError) as exc:
        print(f"coe {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
