"""``coe cache stats`` and ``coe cache flush [--version V]``: the route cache in Redis.

Both talk to Redis directly. ``--url`` also asks a running service (its router replica's L1
and hit counters), and ``flush --url`` flushes through the service, so the replicas' in-process
entries go too.
"""

from __future__ import annotations

import argparse
import json


def register(commands: argparse._SubParsersAction) -> None:
    cache = commands.add_parser("cache", help="Inspect or flush the route-decision cache.")
    cache.add_argument("--config", help="App config YAML (default: $COE_CONFIG or configs/default.yaml).")
    actions = cache.add_subparsers(dest="action", required=True, metavar="ACTION")
    stats = actions.add_parser("stats", help="Keys per router version and Redis memory limits (and service counters).")
    stats.add_argument("--url", help="A running coe-router, e.g. http://127.0.0.1:8000, for its in-process counters.")
    stats.set_defaults(run=run_stats)
    flush = actions.add_parser("flush", help="Delete cached decisions (all, or one router version's).")
    flush.add_argument("--version", help="Only this router version's entries.")
    flush.add_argument("--url", help="Flush through a running coe-router (also clears its replicas' in-process cache).")
    flush.set_defaults(run=run_flush)


def _config(args: argparse.Namespace):  # type: ignore[no-untyped-def]
    from services.config import load_config

    return load_config(args.config).cache


def run_stats(args: argparse.Namespace) -> int:
    from services.cache import admin
    from services.cache.config import redacted
    from services.cache.connection import sync_client

    config = _config(args)
    report: dict[str, object] = {"redis_url": redacted(config.resolved_url()), "namespace": config.namespace}
    try:
        report["redis"] = admin.stats(sync_client(config, timeout_s=5.0), config.namespace)
    except Exception as exc:  # report, do not crash: Redis being down is a fact worth printing
        report["redis"] = {"error": f"{exc.__class__.__name__}: {exc}"}
    if args.url:
        import httpx

        from services.auth.keys import service_headers

        report["service"] = httpx.get(f"{args.url.rstrip('/')}/admin/cache/stats", headers=service_headers(), timeout=10).json()
    print(json.dumps(report, indent=2))
    return 0


def run_flush(args: argparse.Namespace) -> int:
    if args.url:
        import httpx

        from services.auth.keys import service_headers

        body = {"version": args.version} if args.version else {}
        response = httpx.post(f"{args.url.rstrip('/')}/admin/cache/flush", json=body, headers=service_headers(), timeout=30)
        print(json.dumps(response.json(), indent=2))
        return 0 if response.status_code == 200 else 2
    from services.cache import admin
    from services.cache.connection import sync_client

    config = _config(args)
    removed = admin.flush(sync_client(config, timeout_s=5.0), config.namespace, args.version)
    print(f"removed {removed} cached decision(s)" + (f" of router {args.version}" if args.version else ""))
    return 0
