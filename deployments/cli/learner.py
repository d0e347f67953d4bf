"""``coe learner``: run the online learner on its own, outside Ray Serve, and look after its streams."""

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
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    replay = actions.add_parser(
        "replay-dead",
        help="Append every dead letter to its stream again (after fixing what made it fail).",
        description="Entries that failed learner.max_attempts times wait in learner.dead_letter_stream; this "
        "moves each back to the stream it came from, where the learner reads it as a new entry.",
    )
    replay.add_argument("--config", default=argparse.SUPPRESS, help="App config YAML.")
    replay.set_defaults(run=run_replay_dead)
    forget = actions.add_parser(
        "forget",
        help="Delete the learner's consumer group, so that a learner without a checkpoint may start over.",
        description="The learner refuses to start when its group acknowledged entries but its checkpoint is gone. "
        "This deletes the group on both streams; the entries still in them are learned again.",
    )
    forget.add_argument("--config", default=argparse.SUPPRESS, help="App config YAML.")
    forget.add_argument("--yes", action="store_true", help="Required: what the learner learned from trimmed entries is gone for good.")
    forget.set_defaults(run=run_forget)


def _redis(config):  # noqa: ANN001, ANN202 - a redis.Redis for the config's server
    from services.cache.connection import sync_client

    return sync_client(config.cache, timeout_s=10.0)


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


def run_replay_dead(args: argparse.Namespace) -> int:
    from services.config import load_config
    from services.learner.dead_letters import replay_dead_letters

    config = load_config(args.config)
    counts = replay_dead_letters(config, _redis(config))
    print(f"replayed {counts['replayed']} dead letters from {config.learner.dead_letter_stream}"
          + (f"; kept {counts['kept']} that name no stream of this config" if counts["kept"] else ""))
    return 0


def run_forget(args: argparse.Namespace) -> int:
    from services.config import load_config
    from services.learner.dead_letters import forget_consumer_group

    config = load_config(args.config)
    if not args.yes:
        raise ValueError("`coe learner forget` deletes the learner's consumer group; add --yes to confirm")
    removed = forget_consumer_group(config, _redis(config))
    print(f"deleted consumer group '{config.learner.consumer_group}' on: {', '.join(removed) or 'no stream (it did not exist)'}")
    return 0
