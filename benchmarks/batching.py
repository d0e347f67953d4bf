"""Batching benchmark: tokens/s of N concurrent requests against N sequential ones.

Both runs hit the same expert through the real HTTP API in the same process and the same app,
so the ratio measures what batching buys on this machine. Usage:

    coe bench batching [--url http://127.0.0.1:8000] [--requests 8] [--max-tokens 64]

Without ``--url`` it starts the app from the config on a free port and stops it afterwards.
Writes a JSON summary and a PNG bar chart to ``benchmarks/results/``.
"""

from __future__ import annotations

import argparse
import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
from _report import RESULTS_DIR, save
from tqdm.auto import tqdm

from deployments.local import free_port

PROMPTS = (
    "Write a short story about a lighthouse keeper who finds a message in a bottle.",
    "Explain how a refrigerator keeps food cold, in plain words.",
    "Describe a busy market in a coastal town at dawn.",
    "Give advice to someone starting to learn the guitar.",
    "Write a letter to a friend describing your favourite season.",
    "Explain why the sky looks blue during the day.",
    "Describe the life cycle of a butterfly for a child.",
    "Write a product description for a hand-made wooden chair.",
)


async def _one(client: httpx.AsyncClient, model: str, prompt: str, max_tokens: int) -> int:
    response = await client.post(
        "/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens, "temperature": 0},
    )
    response.raise_for_status()
    return int(response.json()["usage"]["completion_tokens"])


async def measure(url: str, model: str, requests: int, concurrency: int, max_tokens: int) -> dict[str, float]:
    """Send ``requests`` requests with at most ``concurrency`` in flight; return tokens/s."""
    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(requests)]
    limit = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:

        async def bounded(prompt: str) -> int:
            async with limit:
                return await _one(client, model, prompt, max_tokens)

        started = time.perf_counter()
        tokens = sum(await asyncio.gather(*(bounded(prompt) for prompt in prompts)))
        elapsed = time.perf_counter() - started
    return {"concurrency": concurrency, "requests": requests, "tokens": tokens, "seconds": elapsed, "tokens_per_s": tokens / elapsed}



def run(url: str, model: str, requests: int, max_tokens: int, levels: list[int]) -> dict[str, Any]:
    asyncio.run(measure(url, model, 2, 2, 8))  # warm-up: first-request costs are not batching
    rows = []
    for concurrency in tqdm(levels, desc="concurrency levels"):
        rows.append(asyncio.run(measure(url, model, requests, concurrency, max_tokens)))
    sequential = rows[0]["tokens_per_s"]
    for row in rows:
        row["speedup_vs_sequential"] = row["tokens_per_s"] / sequential
    return {"model": model, "max_tokens": max_tokens, "results": rows}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = summary["results"]
    figure, axis = plt.subplots(figsize=(6, 4))
    axis.bar([str(row["concurrency"]) for row in rows], [row["tokens_per_s"] for row in rows], color="#3b7dd8")
    for index, row in enumerate(rows):
        axis.text(index, row["tokens_per_s"], f"{row['speedup_vs_sequential']:.1f}×", ha="center", va="bottom")
    axis.set_ylim(0, max(row["tokens_per_s"] for row in rows) * 1.15)
    axis.set_xlabel("requests in flight")
    axis.set_ylabel("completion tokens / s")
    axis.set_title(f"Batching on {summary['model']} ({summary['requests']} requests, {summary['max_tokens']} max tokens)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--url", help="A running coe-router; default: start one from --config.")
    parser.add_argument("--config", help="App config when starting the app (default: configs/default.yaml).")
    parser.add_argument("--model", default="smollm2", help="Expert to load (default: smollm2).")
    parser.add_argument("--requests", type=int, default=8)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,2,4,8", help="Concurrency levels; the first is the baseline.")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    levels = [int(level) for level in args.levels.split(",")]

    if args.url:
        summary = run(args.url, args.model, args.requests, args.max_tokens, levels)
    else:
        from deployments.local import running_app
        from services.config import load_config

        with running_app(load_config(args.config), port=free_port()) as url:
            summary = run(url, args.model, args.requests, args.max_tokens, levels)
    summary["requests"] = args.requests

    print(f"\nbatching benchmark: {args.requests} requests to {args.model}, max_tokens={args.max_tokens}")
    print(f"{'in flight':>10} {'tokens':>8} {'seconds':>9} {'tokens/s':>10} {'vs sequential':>14}")
    for row in summary["results"]:
        print(
            f"{row['concurrency']:>10} {row['tokens']:>8} {row['seconds']:>9.2f} "
            f"{row['tokens_per_s']:>10.1f} {row['speedup_vs_sequential']:>13.2f}x"
        )
    save(args.out, "batching", summary, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
