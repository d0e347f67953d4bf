"""``coe serve``: run the application in the foreground until Ctrl-C.

It starts a local Ray instance (or joins one with ``--address``), deploys the app built from the
config, waits until ``/readyz`` answers ready, prints the URL, and on Ctrl-C or SIGTERM shuts
Serve and Ray down cleanly.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING

from deployments.background_job import BackgroundJob, ServiceLoad

if TYPE_CHECKING:
    from services.config import AppConfig


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="Serve the OpenAI-compatible API in the foreground.")
    serve.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    serve.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default: 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000).")
    serve.add_argument("--address", help="Join this Ray cluster instead of starting a local one.")
    serve.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all).")
    serve.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for /readyz.")
    serve.add_argument(
        "--train-missing-reward",
        action="store_true",
        help="Once serving, train a missing reward model in the background (only shadow evaluation needs it).",
    )
    serve.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deployments.local import running_app
    from services.config import load_config

    config = load_config(args.config)
    try:
        with running_app(
            config,
            host=args.host,
            port=args.port,
            address=args.address,
            num_cpus=args.num_cpus,
            ready_timeout_s=args.ready_timeout,
        ) as url:
            print(f"coe-router is ready at {url} (OpenAI base_url: {url}/v1). Press Ctrl-C to stop.", flush=True)
            print(auth_line(config), flush=True)
            job = reward_training(config, args.config) if args.train_missing_reward else None
            try:
                while True:
                    time.sleep(3600)
            finally:
                if job is not None:
                    job.stop()
    except KeyboardInterrupt:
        print("coe-router stopped.", file=sys.stderr, flush=True)
    return 0


def reward_training(config: AppConfig, config_arg: str | None) -> BackgroundJob | None:
    """Start ``coe train reward --missing --budget`` beside the service when no reward model is there."""
    from services.artifacts import MANIFEST_NAME

    folder = Path(config.training.reward_model)
    if (folder / MANIFEST_NAME).is_file():
        return None
    argv = [sys.executable, "-m", "deployments.cli.main", "train", "reward", "--missing", "--budget", "--threads", "1"]
    if config_arg:
        argv += ["--config", config_arg]
    job = BackgroundJob("reward model", argv, yield_to=ServiceLoad(os.getpid()))  # Ray's replicas are our descendants
    print(
        f"No reward model at {folder}: training one in the background. Routing and chat work now; the "
        "learner's shadow evaluation starts when the model is written (GET /admin/learner/status).",
        flush=True,
    )
    job.start()
    return job


def auth_line(config: "AppConfig") -> str:
    """One line saying whether clients need keys, so nobody exposes an open service by mistake."""
    if config.auth.required():
        return "auth is on: every endpoint but /healthz and /readyz needs an API key (coe keys create)."
    return (
        "auth is off: every endpoint answers without a key; keep this port private, or set auth.enabled: true "
        "(or COE_AUTH=required) and make keys with `coe keys create`."
    )
