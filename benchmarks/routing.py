"""Routing benchmark: decision latency, batched throughput, and test-split accuracy.

    coe bench routing [--config PATH] [--requests 512] [--concurrency 32]

1. Latency: p50/p99 of one routing decision, in-process, against the bare embedding forward
   pass of the same texts, measured in the same run; the ratio is the router's own overhead.
2. Throughput: decisions/s through the router deployment with ``concurrency`` requests in
   flight, with Serve batching (max batch 32) against without (max batch 1), same run.
3. Accuracy per category on the test split, from the current router artifact.

Writes ``benchmarks/results/routing.json`` and ``routing.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm


def percentile(values: list[float], q: float) -> float:
    return float(np.percentile(np.array(values), q))


def latency(router: Any, texts: list[str], repeats: int) -> dict[str, float]:
    """Per-request decision time against the embedding pass alone, interleaved so both see the same machine."""
    embedder = router.embedder
    for text in texts[:8]:  # warm-up
        embedder.encode([text])
        router.decide([router.prepare([{"role": "user", "content": text}])])
    decision_ms, embedding_ms = [], []
    for _ in range(repeats):
        for text in tqdm(texts, desc="latency", leave=False):
            started = time.perf_counter()
            embedder.encode([text])
            embedding_ms.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            router.decide([router.prepare([{"role": "user", "content": text}])])
            decision_ms.append((time.perf_counter() - started) * 1000)
    return {
        "decision_p50_ms": percentile(decision_ms, 50),
        "decision_p99_ms": percentile(decision_ms, 99),
        "embedding_p50_ms": percentile(embedding_ms, 50),
        "embedding_p99_ms": percentile(embedding_ms, 99),
        "p50_ratio": percentile(decision_ms, 50) / percentile(embedding_ms, 50),
        "p99_ratio": percentile(decision_ms, 99) / percentile(embedding_ms, 99),
    }


async def _throughput(handle: Any, texts: list[str], concurrency: int) -> float:
    limit = asyncio.Semaphore(concurrency)

    async def one(text: str) -> None:
        async with limit:
            await handle.route.remote([{"role": "user", "content": text}])

    await asyncio.gather(*(one(text) for text in texts[:concurrency]))  # warm-up
    started = time.perf_counter()
    await asyncio.gather(*(one(text) for text in texts))
    return len(texts) / (time.perf_counter() - started)


def throughput(config: Any, texts: list[str], concurrency: int) -> dict[str, float]:
    """Decisions/s through the router deployment, batched against unbatched, in one Ray session."""
    import ray
    from ray import serve

    from deployments.app import deployment_options
    from deployments.router import RouterServer

    results = {}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        for label, batch_size in (("unbatched", 1), ("batched", 32)):
            router = config.router.model_copy(update={"batching": config.router.batching.model_copy(update={"max_batch_size": batch_size})})
            variant = config.model_copy(update={"router": router})
            app = serve.deployment(RouterServer).options(name="router", **deployment_options(router.deployment)).bind(variant)
            handle = serve.run(app, name=f"routing-bench-{label}", route_prefix=None)
            results[f"{label}_decisions_per_s"] = asyncio.run(_throughput(handle, texts, concurrency))
            serve.delete(f"routing-bench-{label}")
    finally:
        serve.shutdown()
        ray.shutdown()
    results["batched_vs_unbatched"] = results["batched_decisions_per_s"] / results["unbatched_decisions_per_s"]
    return results


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    lat = summary["latency"]
    left.bar(["embedding p50", "decision p50", "embedding p99", "decision p99"],
             [lat["embedding_p50_ms"], lat["decision_p50_ms"], lat["embedding_p99_ms"], lat["decision_p99_ms"]],
             color=["#9bbbe8", "#3b7dd8", "#9bbbe8", "#3b7dd8"])
    left.set_ylabel("ms per request")
    left.set_title(f"Decision vs embedding pass (p50 ×{lat['p50_ratio']:.2f})")
    accuracy = summary["accuracy"]["per_category"]
    right.bar(list(accuracy), [row["recall"] for row in accuracy.values()], color="#3b7dd8")
    right.set_ylim(0, 1.05)
    right.set_ylabel("recall on the test split")
    right.set_title(f"Test accuracy {summary['accuracy']['accuracy']:.1%}")
    right.tick_params(axis="x", rotation=45)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="App config (default: configs/default.yaml).")
    parser.add_argument("--requests", type=int, default=512, help="Requests for the throughput runs.")
    parser.add_argument("--concurrency", type=int, default=32)
    parser.add_argument("--latency-texts", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results")
    args = parser.parse_args(argv)

    from deployments.cli.route import load_router
    from router_training.router.data import DATA_DIR, read_examples
    from services.config import load_config
    from services.router.routing_input import routing_text

    config = load_config(args.config)
    router = load_router(args.config, None)
    examples = read_examples(DATA_DIR / "test.jsonl", router.artifact.manifest.taxonomy)
    texts = [routing_text(example.messages, router.artifact.manifest.context)[0] for example in examples]
    summary: dict[str, Any] = {"router_version": router.version}
    summary["latency"] = latency(router, texts[: args.latency_texts], args.repeats)
    summary["accuracy"] = router.artifact.manifest.metrics["test"]
    pool = (texts * (args.requests // max(1, len(texts)) + 1))[: args.requests]
    summary["throughput"] = throughput(config, pool, args.concurrency)
    summary["throughput"]["concurrency"] = args.concurrency

    lat, thr = summary["latency"], summary["throughput"]
    print(f"\nrouting benchmark, router {router.version}")
    print(f"decision latency p50 {lat['decision_p50_ms']:.1f} ms, p99 {lat['decision_p99_ms']:.1f} ms")
    print(f"embedding pass   p50 {lat['embedding_p50_ms']:.1f} ms, p99 {lat['embedding_p99_ms']:.1f} ms")
    print(f"decision / embedding: p50 ×{lat['p50_ratio']:.2f}, p99 ×{lat['p99_ratio']:.2f}")
    print(
        f"{args.concurrency} concurrent: batched {thr['batched_decisions_per_s']:.0f}/s, "
        f"unbatched {thr['unbatched_decisions_per_s']:.0f}/s (×{thr['batched_vs_unbatched']:.2f})"
    )
    print(f"test accuracy {summary['accuracy']['accuracy']:.1%}")
    for category, row in summary["accuracy"]["per_category"].items():
        print(f"  {category:<12} precision {row['precision']:.2f}  recall {row['recall']:.2f}  n={row['support']}")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "routing.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    plot(summary, args.out / "routing.png")
    print(f"wrote {args.out / 'routing.json'} and {args.out / 'routing.png'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
