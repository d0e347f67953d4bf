"""Route-cache benchmark: decision latency per cache level, and hit ratio on a replayed stream.

    coe bench cache [--config PATH] [--redis-url URL] [--stream 1500]

1. Latency p50/p99 of one routing decision answered from the L1, from Redis, and computed
   (miss), all in the same run, through the same code a router replica runs
   (``route_with_cache``) against a real Redis.
2. Hit ratio on a replayed request stream: each request repeats an earlier one with
   probability r (with whitespace changed half of the time), else it is new. Two router
   replicas with their own L1 share one Redis and take turns, so repeats are answered by the
   L1 of the replica that saw them first or by Redis for the other one.

Writes ``benchmarks/results/cache.json`` and ``cache.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np
from _report import RESULTS_DIR, save
from tqdm.auto import tqdm


def _direct(router: Any) -> Any:
    """``decide`` for :func:`route_with_cache`: the router in this process, one query at a time."""

    async def decide(front: Any, query: Any) -> Any:
        return router.decide([query])[0]

    return decide


def _cache(config: Any, url: str | None) -> Any:
    from services.cache.route_cache import RouteCache

    settings = config.cache.model_copy(update={"namespace": f"coe:bench:{uuid.uuid4().hex[:8]}", **({"url": url} if url else {})})
    cache = RouteCache(settings)
    if not cache.check_redis_at_start():
        raise SystemExit(f"no Redis answers at {settings.resolved_url()}; start one or pass --redis-url")
    return cache


async def latency(config: Any, router: Any, texts: list[str], url: str | None) -> dict[str, dict[str, float]]:
    from services.cache import admin
    from services.cache.cached_routing import route_with_cache
    from services.cache.connection import sync_client

    cache = _cache(config, url)
    samples: dict[str, list[float]] = {"miss": [], "redis": [], "l1": []}
    for text in tqdm(texts, desc="latency"):
        query = router.prepare([{"role": "user", "content": text}])
        for expected in ("miss", "l1", "redis"):
            if expected == "redis":
                cache.clear_l1()
            started = time.perf_counter()
            decision = await route_with_cache(cache, router.front, query, _direct(router))
            elapsed = (time.perf_counter() - started) * 1000
            await cache.drain()
            if decision.cache == expected:
                samples[expected].append(elapsed)
    admin.flush(sync_client(cache.config, timeout_s=5), cache.config.namespace)
    return {
        level: {"p50_ms": float(np.percentile(values, 50)), "p99_ms": float(np.percentile(values, 99)), "n": len(values)}
        for level, values in samples.items()
    }


async def replay(config: Any, router: Any, pool: list[str], length: int, repeat_rate: float, url: str | None, seed: int) -> dict[str, float]:
    from services.cache import admin
    from services.cache.cached_routing import route_with_cache
    from services.cache.connection import sync_client

    rng = random.Random(seed)
    replicas = [_cache(config, url), None]
    replicas[1] = type(replicas[0])(replicas[0].config)  # same namespace and Redis, its own L1
    fresh = iter(rng.sample(pool, len(pool)))
    seen: list[str] = []
    counts = {"l1": 0, "redis": 0, "miss": 0}
    repeats = 0
    for index in tqdm(range(length), desc=f"replay r={repeat_rate}", leave=False):
        if seen and rng.random() < repeat_rate:
            text = rng.choice(seen)
            repeats += 1
            if rng.random() < 0.5:
                text = "  " + text.replace(" ", "  ") + "\n"
        else:
            text = next(fresh)
            seen.append(text)
        cache = replicas[index % 2]
        decision = await route_with_cache(cache, router.front, router.prepare([{"role": "user", "content": text}]), _direct(router))
        await cache.drain()
        counts[decision.cache] += 1
    admin.flush(sync_client(replicas[0].config, timeout_s=5), replicas[0].config.namespace)
    return {
        "repeat_rate": repeat_rate,
        "requests": length,
        "repeats": repeats,
        "hit_ratio": (counts["l1"] + counts["redis"]) / length,
        "l1_share": counts["l1"] / length,
        "redis_share": counts["redis"] / length,
        "miss_share": counts["miss"] / length,
    }


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    levels = ["l1", "redis", "miss"]
    lat = summary["latency"]
    positions = np.arange(len(levels))
    left.bar(positions - 0.2, [lat[level]["p50_ms"] for level in levels], 0.4, label="p50", color="#3b7dd8")
    left.bar(positions + 0.2, [lat[level]["p99_ms"] for level in levels], 0.4, label="p99", color="#9bbbe8")
    left.set_xticks(positions, ["L1 hit", "Redis hit", "miss"])
    left.set_yscale("log")
    left.set_ylabel("ms per decision (log)")
    left.legend()
    left.set_title("Decision latency by cache level")
    rows = summary["replay"]
    rates = [str(row["repeat_rate"]) for row in rows]
    right.bar(rates, [row["l1_share"] for row in rows], label="L1", color="#3b7dd8")
    right.bar(rates, [row["redis_share"] for row in rows], bottom=[row["l1_share"] for row in rows], label="Redis", color="#9bbbe8")
    right.plot(rates, [row["repeats"] / row["requests"] for row in rows], "k--o", label="repeats in stream")
    right.set_xlabel("repetition rate r")
    right.set_ylabel("share of requests")
    right.set_ylim(0, 1)
    right.legend()
    right.set_title("Hits on a replayed stream (2 replicas, shared Redis)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="App config (default: configs/default.yaml).")
    parser.add_argument("--redis-url", help="Redis to use (default: the config's).")
    parser.add_argument("--latency-texts", type=int, default=150)
    parser.add_argument("--stream", type=int, default=1500, help="Requests per replayed stream.")
    parser.add_argument("--rates", default="0.3,0.6,0.9", help="Repetition rates to replay.")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)

    from deployments.cli.route import load_router
    from router_training.router.data import DATA_DIR, SEED_DIR, read_examples
    from services.config import load_config
    from services.router.routing_input import routing_text

    config = load_config(args.config)
    router = load_router(args.config, None)
    taxonomy = router.artifact.manifest.taxonomy
    test = [routing_text(e.messages, router.artifact.manifest.context)[0] for e in read_examples(DATA_DIR / "test.jsonl", taxonomy)]
    pool = [
        routing_text(e.messages, router.artifact.manifest.context)[0]
        for category in taxonomy
        for e in read_examples(SEED_DIR / f"{category}.jsonl", taxonomy)
    ]
    summary: dict[str, Any] = {"router_version": router.version}
    summary["latency"] = asyncio.run(latency(config, router, test[: args.latency_texts], args.redis_url))
    summary["replay"] = [
        asyncio.run(replay(config, router, pool, args.stream, float(rate), args.redis_url, seed=7)) for rate in args.rates.split(",")
    ]

    print(f"\nroute-cache benchmark, router {router.version}")
    for level, row in summary["latency"].items():
        print(f"  {level:<6} p50 {row['p50_ms']:8.3f} ms   p99 {row['p99_ms']:8.3f} ms   (n={row['n']})")
    miss = summary["latency"]["miss"]["p50_ms"]
    print(f"  miss / L1 hit p50: ×{miss / summary['latency']['l1']['p50_ms']:.0f}; miss / Redis hit p50: ×{miss / summary['latency']['redis']['p50_ms']:.1f}")
    for row in summary["replay"]:
        print(
            f"  r={row['repeat_rate']}: hit ratio {row['hit_ratio']:.1%} (repeats in stream {row['repeats'] / row['requests']:.1%}; "
            f"L1 {row['l1_share']:.1%}, Redis {row['redis_share']:.1%})"
        )
    save(args.out, "cache", summary, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
