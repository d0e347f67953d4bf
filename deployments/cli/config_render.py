"""``coe config render``: write deployment files generated from the app config.

``--target serve`` prints (or writes) the Serve config YAML for ``serve run``/``serve deploy``;
``--target k8s`` writes a kustomize overlay's generated files: the RayService ``serveConfigV2``
patch, built by the same ``render_serve_config``, and the app config for the ConfigMap.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path


def register(commands: argparse._SubParsersAction) -> None:
    config = commands.add_parser("config", help="Render deployment files from the app config.")
    actions = config.add_subparsers(dest="action", required=True, metavar="ACTION")
    render = actions.add_parser(
        "render",
        help="Print (or write) the Serve config for `serve run`/`serve deploy`, or a k8s overlay's generated files.",
    )
    render.add_argument(
        "--target",
        choices=["serve", "k8s"],
        default="serve",
        help="serve: a Serve config YAML; k8s: the RayService serveConfigV2 patch and ConfigMap source of a "
        "kustomize overlay (default: serve).",
    )
    render.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    render.add_argument(
        "--config-arg",
        help="Config path as the Serve controller sees it (default: as given; k8s: where the ConfigMap is mounted).",
    )
    render.add_argument("--host", default="0.0.0.0")
    render.add_argument("--port", type=int, default=8000)
    render.add_argument(
        "--out",
        type=Path,
        help="serve: write this file (atomically) instead of printing; k8s: the overlay folder to write into.",
    )
    render.add_argument("--name", default="coe", help="k8s: name of the RayService (default: coe).")
    render.add_argument(
        "--check", action="store_true", help="k8s: write nothing; exit 1 when the files under --out are stale."
    )
    render.set_defaults(run=run)


def _write(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)


def _label(path: Path) -> str:
    from services.config import PROJECT_ROOT

    try:
        return path.resolve().relative_to(PROJECT_ROOT).as_posix()
    except ValueError:
        return str(path)


def run_k8s(args: argparse.Namespace) -> int:
    from deployments.serve_config import K8S_CONFIG_PATH, K8S_SERVE_PATCH, render_k8s_files
    from services.config import CONFIG_ENV_VAR, DEFAULT_CONFIG_PATH

    if (args.host, args.port) != ("0.0.0.0", 8000):
        raise ValueError("--target k8s serves on 0.0.0.0:8000, the port of KubeRay's serve Service")
    config_file = args.config or os.environ.get(CONFIG_ENV_VAR) or str(DEFAULT_CONFIG_PATH)
    out_label = _label(args.out) if args.out is not None else "OVERLAY"
    files = render_k8s_files(
        config_file, out_label=out_label, config_arg=args.config_arg or K8S_CONFIG_PATH, service_name=args.name
    )
    if args.out is None:
        if args.check:
            raise ValueError("--check needs --out (the overlay folder to compare)")
        sys.stdout.write(files[K8S_SERVE_PATCH])
        return 0
    if args.check:
        stale = [
            name for name, text in files.items()
            if not (args.out / name).is_file() or (args.out / name).read_text(encoding="utf-8") != text
        ]
        for name in stale:
            print(f"stale: {args.out / name}", file=sys.stderr)
        if stale:
            print(f"rerun without --check to regenerate {args.out}", file=sys.stderr)
            return 1
        print(f"{args.out} is up to date")
        return 0
    for name, text in files.items():
        _write(args.out / name, text)
        print(f"wrote {args.out / name}")
    return 0


def run(args: argparse.Namespace) -> int:
    if args.target == "k8s":
        return run_k8s(args)
    if args.check:
        raise ValueError("--check applies to --target k8s only")
    from deployments.serve_config import dump_yaml, render_serve_config
    from services.config import DEFAULT_CONFIG_PATH, PROJECT_ROOT, load_config

    config = load_config(args.config)
    config_arg = args.config_arg or args.config or os.path.relpath(DEFAULT_CONFIG_PATH, PROJECT_ROOT)
    text = dump_yaml(render_serve_config(config, config_arg=config_arg, host=args.host, port=args.port))
    if args.out is None:
        sys.stdout.write(text)
        return 0
    _write(args.out, text)
    print(f"wrote {args.out}")
    return 0
