"""``coe keys create | list | revoke``: API keys, kept hashed in the service's Redis.

The key is printed once, by ``create``; nothing can show it again. ``--key-env VAR`` registers
a key given from outside instead (a Kubernetes Secret), so a deployment can have its first admin
key before anyone has run the CLI against it.

CLI commands that call a running service (``coe cache … --url``) send ``$COE_API_KEY``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os


def register(commands: argparse._SubParsersAction) -> None:
    keys = commands.add_parser("keys", help="Create, list or revoke API keys (auth.enabled).")
    keys.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    actions = keys.add_subparsers(dest="action", required=True, metavar="ACTION")
    create = actions.add_parser("create", help="Make a key and print it, once.")
    create.add_argument("--name", required=True, help="A name to list and revoke it by (letters, digits, _ . -).")
    create.add_argument("--role", choices=["user", "admin"], default="user", help="admin may also call /admin/* (default: user).")
    create.add_argument("--rpm", type=int, help="Requests per minute (default: auth.default_rpm, else unlimited).")
    create.add_argument("--tpm", type=int, help="Chat tokens per minute (default: auth.default_tpm, else unlimited).")
    create.add_argument("--key-env", metavar="VAR", help="Register the key held in this environment variable instead of making one.")
    create.add_argument("--if-missing", action="store_true", help="Do nothing (exit 0) when a key of that name exists (deploy-time bootstrap).")
    create.set_defaults(run=run_create)
    actions.add_parser("list", help="Name, role, limits, created and last used of every key (never the key).").set_defaults(run=run_list)
    revoke = actions.add_parser("revoke", help="Delete a key; replicas stop accepting it within auth.key_cache_ttl_s.")
    revoke.add_argument("name")
    revoke.set_defaults(run=run_revoke)


def _store(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from services.auth.keys import KeyStore
    from services.cache.connection import sync_client
    from services.config import load_config

    config = load_config(args.config)
    return config, KeyStore(config.auth.namespace, sync_client(config.cache, timeout_s=5.0))


def run_create(args: argparse.Namespace) -> int:
    config, store = _store(args)
    given = None
    if args.key_env:
        given = os.environ.get(args.key_env)
        if not given:
            raise ValueError(f"--key-env {args.key_env}: that environment variable is not set")
    rpm = args.rpm if args.rpm is not None else config.auth.default_rpm
    tpm = args.tpm if args.tpm is not None else config.auth.default_tpm
    for flag, value in (("--rpm", rpm), ("--tpm", tpm)):
        if value is not None and value < 1:
            raise ValueError(f"{flag} must be at least 1")
    if args.if_missing and any(record.name == args.name for record in store.list()):
        print(f"key '{args.name}' exists; nothing to do")
        return 0
    key, record = store.create(args.name, args.role, rpm, tpm, key=given)
    if given is None:
        print(key)
        print(f"# key '{record.name}' ({record.role}) created; this is the only time it is shown", flush=True)
    else:
        print(f"key '{record.name}' ({record.role}) registered from ${args.key_env}")
    return 0


def _when(stamp: float | None) -> str:
    return dt.datetime.fromtimestamp(stamp).strftime("%Y-%m-%d %H:%M:%S") if stamp else "never"


def run_list(args: argparse.Namespace) -> int:
    _, store = _store(args)
    records = store.list()
    if not records:
        print("no keys")
        return 0
    print(f"{'NAME':<24} {'ROLE':<6} {'RPM':>8} {'TPM':>10}  {'CREATED':<19}  LAST USED")
    for record in records:
        rpm = str(record.rpm) if record.rpm else "-"
        tpm = str(record.tpm) if record.tpm else "-"
        print(f"{record.name:<24} {record.role:<6} {rpm:>8} {tpm:>10}  {_when(record.created):<19}  {_when(record.last_used)}")
    return 0


def run_revoke(args: argparse.Namespace) -> int:
    _, store = _store(args)
    if not store.revoke(args.name):
        raise ValueError(f"no key named {args.name!r}")
    print(f"key '{args.name}' revoked")
    return 0
