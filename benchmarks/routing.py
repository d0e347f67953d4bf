"""Routing benchmark: decision latency, batched throughput, and test-split accuracy.

    coe bench routing [--config PATH] [--requests 512] [--concurrency 32]

1. Latency: p50/p99 of one routing decision, in-process, against the bare embedding forward
   pass of the same texts, measured in the same run; the ratio is the router's own overhead.
2. Throughput, batched against unbatched in the same run: in-process (``concurrency``
   requests per embedding pass against one per pass), and through the router deployment with
   ``concurrency`` requests in flight (``@serve.batch`` max 32 against max 1), each for the
   test split (mixed lengths, long passages included) and for short prompts.
3. Accuracy per category on the test split, from the current router artifact.

Writes ``benchmarks/results/routing.json`` and ``routing.png``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import numpy as np
from _report import RESULTS_DIR, save
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

    def timed(call: Any, into: list[float]) -> None:
        started = time.perf_counter()
        call()
        into.append((time.perf_counter() - started) * 1000)

    for repeat in range(repeats):
        for index, text in enumerate(tqdm(texts, desc="latency", leave=False)):
            embed = (lambda: embedder.encode([text]), embedding_ms)
            decide = (lambda: router.decide([router.prepare([{"role": "user", "content": text}])]), decision_ms)
            # Whichever runs second on a text finds warm caches: alternate, so neither side gains.
            for call, into in (embed, decide) if (index + repeat) % 2 == 0 else (decide, embed):
                timed(call, into)
    return {
        "decision_p50_ms": percentile(decision_ms, 50),
        "decision_p99_ms": percentile(decision_ms, 99),
        "embedding_p50_ms": percentile(embedding_ms, 50),
        "embedding_p99_ms": percentile(embedding_ms, 99),
        "p50_ratio": percentile(decision_ms, 50) / percentile(embedding_ms, 50),
        "p99_ratio": percentile(decision_ms, 99) / percentile(embedding_ms, 99),
    }


def in_process_throughput(router: Any, texts: list[str], batch: int) -> dict[str, float]:
    """Decisions/s in-process: ``batch`` requests per embedding pass against one at a time."""
    queries = [router.prepare([{"role": "user", "content": text}]) for text in texts]
    started = time.perf_counter()
    for start in range(0, len(queries), batch):
        router.decide(queries[start : start + batch])
    batched = len(queries) / (time.perf_counter() - started)
    started = time.perf_counter()
    for query in queries:
        router.decide([query])
    single = len(queries) / (time.perf_counter() - started)
    return {"batched_decisions_per_s": batched, "unbatched_decisions_per_s": single, "batched_vs_unbatched": batched / single}


async def _throughput(handle: Any, texts: list[str], concurrency: int) -> tuple[float, float]:
    """(decisions/s, mean batch size) with ``concurrency`` requests in flight."""
    limit = asyncio.Semaphore(concurrency)

    async def one(text: str) -> None:
        async with limit:
            await handle.decide.remote([{"role": "user", "content": text}])

    await asyncio.gather(*(one(text) for text in texts[:concurrency]))  # warm-up
    before = await handle.stats.remote()
    started = time.perf_counter()
    await asyncio.gather(*(one(text) for text in texts))
    rate = len(texts) / (time.perf_counter() - started)
    after = await handle.stats.remote()
    return rate, (after["decisions"] - before["decisions"]) / max(1, after["batches"] - before["batches"])


def throughput(config: Any, workloads: dict[str, list[str]], concurrency: int) -> dict[str, dict[str, float]]:
    """Decisions/s through the router deployment, batched against unbatched, in one Ray session."""
    import ray
    from ray import serve

    from deployments.app import deployment_options
    from deployments.router import RouterServer

    results: dict[str, dict[str, float]] = {name: {} for name in workloads}
    ray.init(num_cpus=2, include_dashboard=False, logging_level="WARNING")
    try:
        for label, batch_size in (("unbatched", 1), ("batched", 32)):
            batching = config.router.batching.model_copy(update={"max_batch_size": batch_size})
            router = config.router.model_copy(update={"batching": batching})
            variant = config.model_copy(update={"router": router})
            app = serve.deployment(RouterServer).options(name="router", **deployment_options(router.deployment)).bind(variant)
            handle = serve.run(app, name=f"routing-bench-{label}", route_prefix=None)
            for name, texts in workloads.items():
                rate, mean_batch = asyncio.run(_throughput(handle, texts, concurrency))
                results[name][f"{label}_decisions_per_s"] = rate
                results[name][f"{label}_mean_batch"] = mean_batch
            serve.delete(f"routing-bench-{label}")
    finally:
        serve.shutdown()
        ray.shutdown()
    for row in results.values():
        row["batched_vs_unbatched"] = row["batched_decisions_per_s"] / row["unbatched_decisions_per_s"]
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
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
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
    def pool(items: list[str]) -> list[str]:
        return (items * (args.requests // max(1, len(items)) + 1))[: args.requests]

    workloads = {
        "test split (mixed lengths)": pool(texts),
        "short prompts (<120 chars)": pool([text for text in texts if len(text) < 120]),
    }
    summary["in_process"] = {name: in_process_throughput(router, texts[:256], args.concurrency) for name, texts in workloads.items()}
    summary["throughput"] = throughput(config, workloads, args.concurrency)
    summary["concurrency"] = args.concurrency

    lat = summary["latency"]
    print(f"\nrouting benchmark, router {router.version}")
    print(f"decision latency p50 {lat['decision_p50_ms']:.1f} ms, p99 {lat['decision_p99_ms']:.1f} ms")
    print(f"embedding pass   p50 {lat['embedding_p50_ms']:.1f} ms, p99 {lat['embedding_p99_ms']:.1f} ms")
    print(f"decision / embedding: p50 ×{lat['p50_ratio']:.2f}, p99 ×{lat['p99_ratio']:.2f}")
    for name, row in summary["in_process"].items():
        print(
            f"in-process, {name}: {args.concurrency} per pass {row['batched_decisions_per_s']:.0f}/s, "
            f"one per pass {row['unbatched_decisions_per_s']:.0f}/s → ×{row['batched_vs_unbatched']:.2f}"
        )
    for name, row in summary["throughput"].items():
        print(
            f"router deployment, {args.concurrency} in flight, {name}: @serve.batch {row['batched_decisions_per_s']:.0f}/s "
            f"(mean batch {row['batched_mean_batch']:.1f}), unbatched {row['unbatched_decisions_per_s']:.0f}/s "
            f"→ ×{row['batched_vs_unbatched']:.2f}"
        )
    print(f"test accuracy {summary['accuracy']['accuracy']:.1%}")
    for category, row in summary["accuracy"]["per_category"].items():
        print(f"  {category:<12} precision {row['precision']:.2f}  recall {row['recall']:.2f}  n={row['support']}")
    save(args.out, "routing", summary, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
