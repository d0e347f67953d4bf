"""Fault benchmark: the service under load while its parts are broken, one scenario at a time.

It starts its own app (the default config plus a twin of the default expert, see
``deployments/fault_drill.py``) on a free port, with a Redis of its own that keeps an
append-only file, and runs each scenario for ``--seconds`` under ``--clients`` streaming clients:

- ``baseline``: nothing breaks (the reference for the others);
- ``replica_kill``: the default expert's replica is killed (``ray.kill``) a quarter of the way in;
- ``engine_failure``: every few seconds a request breaks its decode step (the fault drill);
- ``redis_restart``: clients also send feedback; Redis is stopped at a third and restarted at
  two thirds; afterwards the learner must have applied every acknowledged feedback once;
- ``disconnects``: clients hang up at random points, before the first byte included; afterwards
  no request may be in flight and no engine row active.

Usage: ``coe bench faults [--seconds 60] [--clients 8] [--quick] [--out DIR]``. Writes
``faults.json`` and ``faults.png`` (outcomes per scenario).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import random
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
from _report import RESULTS_DIR, save
from tqdm.auto import tqdm

from deployments.local import free_port

PROMPTS = (
    "What is 17 times 23?",
    "Write a haiku about autumn rain.",
    "Explain how a refrigerator keeps food cold.",
    "Fix this Python: def add(a, b) return a + b",
    "Summarise the causes of the French Revolution in two sentences.",
    "Pretend you are a pirate and greet me.",
    "Extract the names from: Ann met Bob and Chen in Oslo.",
    "Why is the sky blue?",
)
SCENARIOS = ("baseline", "replica_kill", "engine_failure", "redis_restart", "disconnects")



class Tally:
    """What one scenario's requests came to."""

    def __init__(self) -> None:
        self.sent = 0
        self.succeeded = 0
        self.failed: Counter[str] = Counter()
        self.worst_s = 0.0
        self.failovers = 0
        self.feedback_sent = 0
        self.feedback_acknowledged = 0
        self.feedback_refused: Counter[str] = Counter()
        self.completions: list[str] = []

    def summary(self) -> dict[str, Any]:
        return {
            "requests_sent": self.sent, "succeeded": self.succeeded, "failed_by_status": dict(self.failed),
            "worst_latency_s": round(self.worst_s, 2), "failovers": self.failovers,
            "feedback_sent": self.feedback_sent, "feedback_acknowledged": self.feedback_acknowledged,
            "feedback_refused_by_status": dict(self.feedback_refused),
        }


async def _chat(client: httpx.AsyncClient, tally: Tally, body: dict[str, Any]) -> None:
    """One streamed request; success means a finish reason and no error event."""
    tally.sent += 1
    started = time.monotonic()
    finish, error, status, route, completion_id = None, None, 0, None, None
    try:
        async with client.stream("POST", "/v1/chat/completions", json={**body, "stream": True}) as response:
            status = response.status_code
            if status != 200:
                await response.aread()
            else:
                async for line in response.aiter_lines():
                    if not line.startswith("data: {"):
                        continue
                    payload = json.loads(line[6:])
                    if "error" in payload:
                        error = payload["error"]
                    for choice in payload.get("choices", []):
                        finish = choice.get("finish_reason") or finish
                    route = payload.get("route") or route
                    if payload.get("id"):
                        completion_id = payload["id"]
    except httpx.HTTPError as exc:
        error = {"message": exc.__class__.__name__}
    tally.worst_s = max(tally.worst_s, time.monotonic() - started)
    if status == 200 and finish and not error:
        tally.succeeded += 1
        if completion_id:
            tally.completions.append(completion_id)
        tally.failovers += len((route or {}).get("failovers", []))
    else:
        tally.failed[str(status) if status != 200 else "200+error_event"] += 1


async def _feedback(client: httpx.AsyncClient, tally: Tally) -> None:
    if not tally.completions:
        return
    tally.feedback_sent += 1
    try:
        response = await client.post("/v1/feedback", json={"id": tally.completions.pop(0), "rating": 1})
        status = response.status_code
    except httpx.HTTPError:
        status = 0
    if status == 200:
        tally.feedback_acknowledged += 1
    else:
        tally.feedback_refused[str(status)] += 1


async def _abandon(port: int, body: dict[str, Any], wait_s: float, tally: Tally) -> None:
    tally.sent += 1
    payload = json.dumps({**body, "stream": True}).encode()
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                 + f"Content-Length: {len(payload)}\r\n\r\n".encode() + payload)
    await writer.drain()
    if wait_s:
        await asyncio.sleep(wait_s)
    writer.close()


async def scenario(name: str, url: str, port: int, seconds: float, clients: int, redis_server: Any, drill: str) -> Tally:
    tally = Tally()
    rng = random.Random(name)
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(base_url=url, timeout=700) as client:

        async def worker(index: int) -> None:
            while time.monotonic() < end:
                body = {"model": "auto", "messages": [{"role": "user", "content": rng.choice(PROMPTS)}],
                        "max_tokens": 24, "temperature": 0}
                if name == "disconnects":
                    await _abandon(port, body, rng.choice([0.0, rng.uniform(0.01, 0.2), rng.uniform(0.2, 1.0)]), tally)
                    continue
                await _chat(client, tally, body)
                if name == "redis_restart":
                    await _feedback(client, tally)

        async def breaker() -> None:
            if name == "replica_kill":
                await asyncio.sleep(seconds / 4)
                await asyncio.to_thread(_kill_default_replica)
            elif name == "engine_failure":
                while time.monotonic() < end - 2:
                    await asyncio.sleep(3)
                    await _chat(client, tally, {"model": "auto", "messages": [{"role": "user", "content": f"Hi {drill}"}],
                                                "max_tokens": 8})
            elif name == "redis_restart":
                await asyncio.sleep(seconds / 3)
                await asyncio.to_thread(redis_server.stop)
                await asyncio.sleep(seconds / 3)
                await asyncio.to_thread(redis_server.start)

        async def progress() -> None:
            with tqdm(total=round(seconds), desc=name, unit="s") as bar:
                while time.monotonic() < end:
                    await asyncio.sleep(1)
                    bar.update(1)
                    bar.set_postfix(sent=tally.sent, ok=tally.succeeded)

        await asyncio.gather(breaker(), progress(), *(worker(index) for index in range(clients)))
    return tally


def _kill_default_replica() -> None:
    import ray

    for actor in ray.util.list_named_actors(all_namespaces=True):
        if actor["name"].startswith("SERVE_REPLICA::") and "#expert-smollm2#" in actor["name"]:
            ray.kill(ray.get_actor(actor["name"], namespace=actor["namespace"]), no_restart=True)


def run(seconds: float, clients: int, names: list[str], work: Path) -> dict[str, Any]:
    from deployments.fault_drill import FAULT_DRILL, wait_for_learner, wait_until_quiet, with_fault_drill
    from deployments.local import running_app
    from deployments.local_redis import RedisServer
    from services.config import DEFAULT_CONFIG_PATH, parse_config

    import yaml

    redis_server = RedisServer(free_port(), work / "redis", persistent=True)
    (work / "redis").mkdir(parents=True, exist_ok=True)
    redis_server.start()
    raw = with_fault_drill(yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8")))
    raw["cache"] = {**raw["cache"], "url": redis_server.url}
    raw["learner"] = {**copy.deepcopy(raw["learner"]), "directory": str(work / "learner"),
                      "hmac_key_file": str(work / "learner.key"), "checkpoint_interval_s": 2,
                      "shadow": {**raw["learner"]["shadow"], "sample_rate": 0.0}}
    raw["ingress"] = {**raw["ingress"], "max_concurrent_requests": max(32, clients * 2)}
    config = parse_config(raw, folder=DEFAULT_CONFIG_PATH.parent, source="fault benchmark config")
    port = free_port()
    results: dict[str, Any] = {}

    def applied(url: str) -> int:
        """Feedback the learner applied, once it caught up with the whole stream."""
        status = wait_for_learner(url, redis_server.client(), config.learner.feedback.stream, 180)
        return int(status["counts"].get("feedback_positive", 0))

    try:
        with running_app(config, port=port, num_cpus=2) as url:
            for name in names:
                before = applied(url) if name == "redis_restart" else 0
                tally = asyncio.run(scenario(name, url, port, seconds, clients, redis_server, FAULT_DRILL))
                row = tally.summary()
                status = wait_until_quiet(url, 120)
                row["in_flight_after"] = status["in_flight"]
                row["active_rows_after"] = sum(engine.get("active_rows", 0) for engine in status["engines"].values())
                if name == "redis_restart":
                    row["feedback_applied"] = applied(url) - before
                results[name] = row
                time.sleep(config.failover.breaker.open_s + 1)  # breakers closed again before the next scenario
    finally:
        redis_server.stop()
    return {"seconds_per_scenario": seconds, "clients": clients, "scenarios": results}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = list(summary["scenarios"])
    rows = [summary["scenarios"][name] for name in names]
    succeeded = [row["succeeded"] for row in rows]
    failed = [sum(row["failed_by_status"].values()) for row in rows]
    figure, axis = plt.subplots(figsize=(7, 4))
    axis.bar(names, succeeded, color="#3b7dd8", label="succeeded")
    axis.bar(names, failed, bottom=succeeded, color="#d8573b", label="failed (error or status)")
    for index, row in enumerate(rows):
        label = f"worst {row['worst_latency_s']:.0f} s"
        abandoned = row["requests_sent"] - succeeded[index] - failed[index]
        if abandoned:  # hung up on purpose; what matters is what they left behind
            label = f"{abandoned} abandoned,\n{row['in_flight_after']} left in flight"
        axis.text(index, succeeded[index] + failed[index], label, ha="center", va="bottom", fontsize=8)
    axis.set_ylim(0, max(max(a + b for a, b in zip(succeeded, failed)), 1) * 1.2)
    axis.set_ylabel("requests")
    axis.set_title(f"Requests per fault scenario ({summary['clients']} clients, {summary['seconds_per_scenario']:g} s each)")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def table(summary: dict[str, Any]) -> str:
    header = f"{'scenario':<15}{'sent':>6}{'ok':>6}  {'failed by status':<24}{'worst s':>8}{'failovers':>10}{'fb sent/acked/applied':>23}"
    lines = [header]
    for name, row in summary["scenarios"].items():
        failed = ", ".join(f"{status}: {count}" for status, count in sorted(row["failed_by_status"].items())) or "-"
        feedback = "-"
        if row["feedback_sent"]:
            feedback = f"{row['feedback_sent']}/{row['feedback_acknowledged']}/{row.get('feedback_applied', '-')}"
        lines.append(f"{name:<15}{row['requests_sent']:>6}{row['succeeded']:>6}  {failed:<24}{row['worst_latency_s']:>8.1f}"
                     f"{row['failovers']:>10}{feedback:>23}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=60.0, help="Length of each scenario.")
    parser.add_argument("--clients", type=int, default=8, help="Concurrent streaming clients.")
    parser.add_argument("--quick", action="store_true", help="20 s per scenario.")
    parser.add_argument("--only", help=f"Comma-separated scenarios (default: all of {', '.join(SCENARIOS)}).")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    names = args.only.split(",") if args.only else list(SCENARIOS)
    unknown = set(names) - set(SCENARIOS)
    if unknown:
        parser.error(f"unknown scenarios {sorted(unknown)}; choose from {', '.join(SCENARIOS)}")
    with tempfile.TemporaryDirectory(prefix="coe-faults-") as work:
        summary = run(20.0 if args.quick else args.seconds, args.clients, names, Path(work))
    print("\nfault benchmark")
    print(table(summary))
    save(args.out, "faults", summary, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
