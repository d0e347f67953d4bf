"""API fuzzing: generated requests to every endpoint, from the service's own OpenAPI document.

    coe bench fuzz [--cases 1000] [--seed N] [--out DIR]

It starts its own app (the default config with auth on, a Redis and a learner folder of its own,
and ``ingress.limits.max_tokens: 8`` so that no completion is long) on a free port, loads
``/openapi.json`` and sends ``--cases`` schemathesis cases across all endpoints, valid and
invalid bodies alike (``deployments.api_fuzz``, the same code as ``tests/deployments/test_fuzz.py``).
A finding is a 5xx, an error that is not OpenAI's JSON error body, or a stream that breaks off;
each comes with a curl command that sends the same request again. Writes ``fuzz.json`` (the
status counts per endpoint and the findings) and exits 1 when there is any finding.
"""

from __future__ import annotations

import argparse
import copy
import os
import tempfile
from pathlib import Path
from typing import Any

from _report import RESULTS_DIR

FUZZ_MAX_TOKENS = 8  # ingress.limits.max_tokens of the fuzzed app: a larger budget is a 400


def fuzz_headers(config: Any) -> dict[str, str]:
    """An admin key of the benchmark's own app (auth is on there), made as `coe keys create --role admin`
    makes one, sent with every case: the fuzzer reaches past authentication to every endpoint."""
    from services.auth.keys import KeyStore
    from services.cache.connection import sync_client

    key, _ = KeyStore(config.auth.namespace, sync_client(config.cache, timeout_s=5.0)).create("fuzz-admin", "admin")
    return {"Authorization": f"Bearer {key}"}


def bench_config(work: Path, redis_url: str) -> Any:
    """The default config with a Redis and a learner folder of the run's own, short completions."""
    import yaml

    from services.config import DEFAULT_CONFIG_PATH, parse_config

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["cache"] = {**raw["cache"], "url": redis_url}
    raw["learner"] = {**copy.deepcopy(raw["learner"]), "directory": str(work / "learner"), "hmac_key_file": str(work / "learner.key"),
                      "shadow": {**raw["learner"]["shadow"], "sample_rate": 0.0}}
    raw["ingress"] = {**raw["ingress"], "limits": {**raw["ingress"].get("limits", {}), "max_tokens": FUZZ_MAX_TOKENS}}
    raw["auth"] = {**raw.get("auth", {}), "enabled": True}
    return parse_config(raw, folder=DEFAULT_CONFIG_PATH.parent, source="fuzz benchmark config")


def run(cases: int, seed: int | None, work: Path) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from deployments.api_fuzz import fuzz
    from deployments.local import free_port, running_app
    from deployments.local_redis import RedisServer

    (work / "redis").mkdir(parents=True)
    redis_server = RedisServer(free_port(), work / "redis")
    redis_server.start()
    config = bench_config(work, redis_server.url)
    headers = fuzz_headers(config)
    try:
        with running_app(config, port=free_port(), num_cpus=2) as url:
            with tqdm(total=cases, desc="fuzz cases", unit="case") as bar:
                report = fuzz(url, headers, cases=cases, seed=seed, progress=lambda done: bar.update(done - bar.n))
    finally:
        redis_server.stop()
    print(report.describe())
    return {"machine": {"cpus": os.cpu_count()}, "auth": bool(headers), "max_tokens": FUZZ_MAX_TOKENS, **report.summary()}


def main(argv: list[str] | None = None) -> int:
    import json

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", type=int, default=1000, help="Generated requests in all (default 1000).")
    parser.add_argument("--seed", type=int, help="Replay a run: the seed it printed (default: a new one).")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coe-bench-fuzz-") as work:
        summary = run(args.cases, args.seed, Path(work))
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "fuzz.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.out / 'fuzz.json'}")
    return 1 if summary["findings"] else 0


if __name__ == "__main__":
    raise SystemExit(main())
