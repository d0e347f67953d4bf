"""``coe serve``: run the application in the foreground until Ctrl-C.

It starts a local Ray instance (or joins one with ``--address``), deploys the app built from the
config, waits until ``/readyz`` answers ready, prints the URL, and on Ctrl-C or SIGTERM shuts
Serve and Ray down cleanly.
"""

from __future__ import annotations

import argparse
import sys
import time


def register(commands: argparse._SubParsersAction) -> None:
    serve = commands.add_parser("serve", help="Serve the OpenAI-compatible API in the foreground.")
    serve.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    serve.add_argument("--host", default="127.0.0.1", help="Interface to listen on (default: 127.0.0.1).")
    serve.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000).")
    serve.add_argument("--address", help="Join this Ray cluster instead of starting a local one.")
    serve.add_argument("--num-cpus", type=int, help="CPUs of the local Ray instance (default: all).")
    serve.add_argument("--ready-timeout", type=float, default=600.0, help="Seconds to wait for /readyz.")
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
            while True:
                time.sleep(3600)
    except KeyboardInterrupt:
        print("coe-router stopped.", file=sys.stderr, flush=True)
    return 0
