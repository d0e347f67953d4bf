"""``coe learner``: run the online learner on its own, outside Ray Serve."""

from __future__ import annotations

import argparse
import signal
import threading


def register(commands: argparse._SubParsersAction) -> None:
    parser = commands.add_parser(
        "learner",
        help="Run the DriftMoE online learner against the feedback and shadow streams.",
        description=(
            "Reads the feedback and shadow streams, adapts the online routing policy, checkpoints, and "
            "publishes the policy the router replicas follow. Ctrl-C checkpoints and stops."
        ),
    )
    parser.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    parser.add_argument("--drain", action="store_true", help="Apply what is waiting, checkpoint, print the status and exit.")
    parser.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from services.config import load_config
    from services.learner.service import LearnerService, describe_status
    from services.learner.shadow import build_evaluator

    config = load_config(args.config)
    service = LearnerService(config, evaluator=build_evaluator(config))
    if args.drain:
        service.drain()
        print(describe_status(service.status()))
        return 0
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        service.run(stop)
    except KeyboardInterrupt:
        stop.set()
        service.checkpoint()
    print(describe_status(service.status()))
    return 0
