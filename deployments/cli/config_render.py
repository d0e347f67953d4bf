"""``coe config render``: write the Serve config YAML generated from the app config."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="Render deployment files from the app config.")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser("render", help="Print (or write) the Serve config for `serve run`/`serve deploy`.")
    render.add_argument("--target", choices=["serve"], default="serve", help="What to render (default: serve).")
    render.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    render.add_argument("--config-arg", help="Config path as the Serve controller sees it (default: as given).")
    render.add_argument("--host", default="0.0.0.0")
    render.add_argument("--port", type=int, default=8000)
    render.add_argument("--out", type=Path, help="Write here (atomically) instead of printing.")
    render.set_defaults(run=run)


def run(args: argparse.Namespace) -> int:
    from deployments.serve_config import dump_yaml, render_serve_config
    from services.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, load_config

    config = load_config(args.config)
    config_arg = args.config_arg or args.config or os.path.relpath(DEFAULT_CONFIG_PATH, PROJECT_ROOT)
    text = dump_yaml(render_serve_config(config, config_arg=config_arg, host=args.host, port=args.port))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    temporary = args.out.with_name(f".{args.out.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, args.out)
    print(f"wrote {args.out}")
    return 0
