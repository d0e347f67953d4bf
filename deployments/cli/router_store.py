"""``coe router list | use VERSION | verify VERSION | prune --keep N``: manage the router store."""

from __future__ import annotations

import argparse
import sys
import time


def register(commands: argparse._SubParsersAction) -> None:
    router = commands.add_parser("router", help="List, pin/roll back, or prune router versions.")
    router.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    actions = router.add_subparsers(dest="action", required=True, metavar="ACTION")
    actions.add_parser("list", help="Versions in the store, oldest first; * marks the current one.").set_defaults(run=run_list)
    use = actions.add_parser("use", help="Point `current` at VERSION (the serving router follows).")
    use.add_argument("version")
    use.set_defaults(run=run_use)
    verify = actions.add_parser(
        "verify", help="Check VERSION as serving would load it: every file hash, and the signature when a signing key is configured."
    )
    verify.add_argument("version")
    verify.set_defaults(run=run_verify)
    prune = actions.add_parser("prune", help="Delete all but the newest N versions (never the current one).")
    prune.add_argument("--keep", type=int, required=True)
    prune.set_defaults(run=run_prune)


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from services.config import load_config
    from services.router.store import RouterStore

    return RouterStore.from_config(load_config(args.config))


def run_list(args: argparse.Namespace) -> int:
    store = _store(args)
    versions = store.versions()
    if not versions:
        print(f"no routers in {store.root}")
    for item in versions:
        created = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(item.created_at)) if item.created_at else "?"
        status = "ok" if item.valid else f"BROKEN: {item.problem}"
        print(f"{'*' if item.current else ' '} {item.version}  {created}  {status}")
    return 0


def run_use(args: argparse.Namespace) -> int:
    artifact = _store(args).use(args.version)
    print(f"current router is now {artifact.version}")
    return 0


def run_verify(args: argparse.Namespace) -> int:
    """0 and ``VERSION: ok (...)`` when the version loads as serving would load it; else 1 and the problem."""
    from services.artifacts import SIGNATURE_NAME, ArtifactError

    store = _store(args)
    folder = store.folder(args.version)  # a malformed name is an error (exit 2) before any path is touched
    if not folder.is_dir():
        print(f"coe router verify: no version {args.version} in {store.root}", file=sys.stderr)
        return 1
    try:
        store.load(args.version)
    except ArtifactError as exc:
        print(f"coe router verify: {args.version} is refused: {exc}", file=sys.stderr)
        return 1
    if store.key is not None:
        signature = "signature verified with the configured key"
    elif (folder / SIGNATURE_NAME).is_file():
        signature = "signed, but the signature was not checked: no signing key is configured"
    else:
        signature = "unsigned; no signing key is configured"
    print(f"{args.version}: ok (every file matches its recorded sha256; {signature})")
    return 0


def run_prune(args: argparse.Namespace) -> int:
    removed = _store(args).prune(args.keep)
    print(f"removed {len(removed)} version(s)" + (": " + ", ".join(removed) if removed else ""))
    return 0
