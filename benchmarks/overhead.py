"""Route-path overhead: what the service adds on top of the work it cannot avoid.

    coe bench overhead [--quick] [--clients 64] [--out DIR] [--profile DIR]

It starts its own app (the default config, with a Redis of its own) on a free port and measures,
through HTTP, every figure against a baseline taken in the same run on the same machine:

- ``/healthz`` (proxy and ingress only): the floor every request pays;
- ``/v1/route`` on a cache hit (one client), against ``/healthz``;
- ``/v1/route`` on a miss (one client, prompts never sent before), against ``/healthz`` plus the
  bare in-process embedding pass of the same texts;
- decisions/s at ``--clients`` concurrent clients on misses, against the same router deciding the
  same prompts in-process in batches of 32; and on hits, against the misses; with the router's
  mean ``@serve.batch`` size and every status code seen;
- chat: time to the first token through HTTP against the same engine in-process, and the
  aggregate tokens/s of 8 concurrent streams, HTTP against in-process.

The three kinds of request are interleaved (one of each in turn), so that all see the same machine.
Writes ``overhead.json`` and ``overhead.png``; with ``--profile DIR``, py-spy flame graphs of the
proxy, ingress and router processes during the miss and hit runs.
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import os
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any, Awaitable, Callable

from _report import RESULTS_DIR, save
from tqdm.auto import tqdm

from deployments.local import free_port

CHAT_PROMPT = [{"role": "user", "content": "Name three colours of the rainbow."}]
STREAMS = 8



def p50_ms(values: list[float]) -> float:
    return round(statistics.median(values) * 1000, 2)


def p99_ms(values: list[float]) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(0.99 * len(ordered)))] * 1000, 2)


def prompt_pool() -> list[list[dict[str, str]]]:
    """Every seed prompt once, the test split first: enough distinct texts that misses are misses."""
    from router_training.router.data import DATA_DIR, read_examples
    from services.router.config import DEFAULT_CATEGORIES

    seen: set[str] = set()
    pool = []
    for split in ("test", "calibration", "external", "train"):
        for example in read_examples(DATA_DIR / f"{split}.jsonl", DEFAULT_CATEGORIES, require_category=False):
            key = repr(example.messages)
            if key not in seen:
                seen.add(key)
                pool.append([dict(message) for message in example.messages])
    return pool


# ---------------------------------------------------------------------------------- in-process
def embedding_seconds(router: Any, prompts: list[list[dict[str, str]]]) -> list[float]:
    """The bare embedding pass of each prompt's routing text, one at a time."""
    texts = [router.prepare(messages).text for messages in prompts]
    router.embedder.encode(texts[:4])  # warm-up
    timings = []
    for text in texts:
        started = time.perf_counter()
        router.embedder.encode([text])
        timings.append(time.perf_counter() - started)
    return timings


def batched_decisions_per_s(router: Any, prompts: list[list[dict[str, str]]], batch_size: int = 32) -> float:
    queries = [router.prepare(messages) for messages in prompts]
    router.decide(queries[:batch_size])  # warm-up
    started = time.perf_counter()
    for start in range(0, len(queries), batch_size):
        router.decide(queries[start : start + batch_size])
    return len(queries) / (time.perf_counter() - started)


async def engine_figures(config: Any, ttft_repeats: int, max_tokens: int) -> dict[str, float]:
    """TTFT and 8-stream tokens/s of the default expert's engine, here, without Serve or HTTP."""
    import torch

    from services.experts.engine import BatchingEngine
    from services.experts.generation import GenerationRequest, PromptMessage
    from services.experts.loading import load_model

    base = config.expert(config.general_expert)
    torch.set_num_threads(base.batching.torch_threads or os.cpu_count() or 1)  # as the replica does
    model, tokenizer = load_model(base)
    engine = BatchingEngine(model, tokenizer, base.batching, name=base.name)
    request = GenerationRequest(
        expert=base.name, messages=tuple(PromptMessage(**message) for message in CHAT_PROMPT),
        max_tokens=max_tokens, max_tokens_explicit=True, temperature=0.0, top_p=1.0,
    )

    async def first_token() -> float:
        started = time.perf_counter()
        stream = engine.generate(request.model_copy(update={"max_tokens": 1}), adapter=None, max_context_tokens=base.max_context_tokens)
        async for _ in stream:
            break
        await stream.aclose()
        return time.perf_counter() - started

    async def tokens() -> int:
        last = None
        async for event in engine.generate(request, adapter=None, max_context_tokens=base.max_context_tokens):
            last = event
        return int(last.completion_tokens) if last is not None else 0

    try:
        await first_token()  # warm-up
        ttfts = [await first_token() for _ in range(ttft_repeats)]
        started = time.perf_counter()
        counts = await asyncio.gather(*(tokens() for _ in range(STREAMS)))
        elapsed = time.perf_counter() - started
    finally:
        engine.close()
    return {"ttft_p50_ms": p50_ms(ttfts), "tokens_per_s_8_streams": round(sum(counts) / elapsed, 2)}


# ---------------------------------------------------------------------------------- over HTTP
async def timed(call: Callable[[], Awaitable[Any]]) -> float:
    started = time.perf_counter()
    await call()
    return time.perf_counter() - started


async def sequential(url: str, hit_prompt: list[dict[str, str]], misses: list[list[dict[str, str]]]) -> dict[str, list[float]]:
    """One client: ``/healthz``, a hit and a miss in turn, so all three see the same machine."""
    import aiohttp

    async with aiohttp.ClientSession() as session:

        async def get(path: str) -> None:
            async with session.get(f"{url}{path}") as response:
                assert response.status == 200, await response.text()
                await response.read()

        async def route(messages: list[dict[str, str]]) -> None:
            async with session.post(f"{url}/v1/route", json={"messages": messages}) as response:
                assert response.status == 200, await response.text()
                await response.read()

        await route(hit_prompt)  # the hit's decision is cached from here on
        for _ in range(5):
            await get("/healthz")
        timings: dict[str, list[float]] = {"healthz": [], "hit": [], "miss": []}
        for messages in tqdm(misses, desc="one client", leave=False):
            timings["healthz"].append(await timed(lambda: get("/healthz")))
            timings["hit"].append(await timed(lambda: route(hit_prompt)))
            timings["miss"].append(await timed(lambda: route(messages)))
    return timings


async def concurrent_routes(
    url: str, prompts: list[list[dict[str, str]] | None], clients: int, desc: str
) -> dict[str, Any]:
    """``clients`` clients sending ``prompts`` between them as fast as answers come back
    (``None`` in place of a prompt: ``GET /healthz``, the HTTP stack's own ceiling)."""
    import aiohttp

    queue: asyncio.Queue[list[dict[str, str]] | None] = asyncio.Queue()
    for messages in prompts:
        queue.put_nowait(messages)
    statuses: Counter[int] = Counter()
    latencies: list[float] = []
    progress = tqdm(total=len(prompts), desc=desc, leave=False)

    async def client(session: aiohttp.ClientSession) -> None:
        while not queue.empty():
            messages = queue.get_nowait()
            started = time.perf_counter()
            request = session.get(f"{url}/healthz") if messages is None else session.post(f"{url}/v1/route", json={"messages": messages})
            async with request as response:
                await response.read()
                statuses[response.status] += 1
            latencies.append(time.perf_counter() - started)
            progress.update()

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session:
        started = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - started
    progress.close()
    return {
        "requests": len(prompts), "per_s": round(statuses[200] / elapsed, 2), "p50_ms": p50_ms(latencies),
        "p99_ms": p99_ms(latencies), "statuses": {str(code): count for code, count in sorted(statuses.items())},
    }


async def chat_figures(url: str, ttft_repeats: int, max_tokens: int, expert: str) -> dict[str, float]:
    """The same requests as :func:`engine_figures`, streamed through HTTP to the named expert."""
    import json

    import aiohttp

    async def stream(session: aiohttp.ClientSession, tokens: int) -> tuple[float, int]:
        body = {"model": expert, "messages": CHAT_PROMPT, "max_tokens": tokens, "temperature": 0, "stream": True,
                "stream_options": {"include_usage": True}}
        started = time.perf_counter()
        first = None
        used = 0
        async with session.post(f"{url}/v1/chat/completions", json=body) as response:
            assert response.status == 200, await response.text()
            async for raw in response.content:
                line = raw.decode().strip()
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                chunk = json.loads(line[6:])
                if first is None and chunk.get("choices") and chunk["choices"][0]["delta"].get("content") is not None:
                    first = time.perf_counter() - started
                if chunk.get("usage"):
                    used = int(chunk["usage"]["completion_tokens"])
        return (first if first is not None else time.perf_counter() - started), used

    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as session:
        await stream(session, 1)  # warm-up
        ttfts = [(await stream(session, 1))[0] for _ in range(ttft_repeats)]
        started = time.perf_counter()
        results = await asyncio.gather(*(stream(session, max_tokens) for _ in range(STREAMS)))
        elapsed = time.perf_counter() - started
    return {"ttft_p50_ms": p50_ms(ttfts), "tokens_per_s_8_streams": round(sum(used for _, used in results) / elapsed, 2)}


SERVE_PROCESSES = {
    "proxy": "ProxyActor",
    "ingress": "ServeReplica:coe:ingress",
    "router": "ServeReplica:coe:router",  # router.placement: deployment only
    "expert": "ServeReplica:coe:expert-smollm2",
}


class Profiles:
    """py-spy flame graphs of the proxy, ingress, router and expert processes while a run goes on (``--profile DIR``)."""

    def __init__(self, folder: Path | None, label: str) -> None:
        self._folder = folder
        self._label = label
        self._recorders: list[Any] = []

    def __enter__(self) -> "Profiles":
        if self._folder is None:
            return self
        import subprocess

        import psutil

        self._folder.mkdir(parents=True, exist_ok=True)
        spy = str(Path(sys.executable).parent / "py-spy")  # installed with Ray, in this environment
        for name, marker in SERVE_PROCESSES.items():
            pids = [proc.pid for proc in psutil.process_iter(["cmdline"]) if marker in " ".join(proc.info["cmdline"] or [])]
            for pid in pids[:1]:
                out = self._folder / f"{self._label}-{name}.svg"
                self._recorders.append(subprocess.Popen(
                    [spy, "record", "--pid", str(pid), "--rate", "50", "--nonblocking", "--output", str(out)],
                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                ))
        time.sleep(1)  # attached before the load starts
        return self

    def __exit__(self, *exc: object) -> None:
        import signal

        for recorder in self._recorders:
            recorder.send_signal(signal.SIGINT)  # py-spy writes the flame graph on SIGINT
        for recorder in self._recorders:
            recorder.wait(timeout=60)


def router_stats(url: str) -> dict[str, Any]:
    """The router replica's decision and batch counts, as ``GET /admin/status`` reports them."""
    import httpx

    return httpx.get(f"{url}/admin/status", timeout=30).json()["router"]


def mean_batch(before: dict[str, Any], after: dict[str, Any]) -> float:
    batches = after["batches"] - before["batches"]
    return round((after["decisions"] - before["decisions"]) / batches, 2) if batches else 0.0


# ---------------------------------------------------------------------------------- the run
def run(quick: bool, clients: int, work: Path, profile: Path | None = None, placement: str | None = None) -> dict[str, Any]:
    import yaml

    from deployments.local import running_app
    from deployments.local_redis import RedisServer
    from services.config import DEFAULT_CONFIG_PATH, parse_config
    from services.router.loader import RouterFactory
    from services.router.store import RouterStore

    sequential_count, miss_count, hit_count, ttft_repeats, max_tokens = (40, 256, 1024, 5, 32) if quick else (200, 1024, 4096, 20, 64)
    pool = prompt_pool()
    singles, burst = pool[1 : 1 + sequential_count], pool[1 + sequential_count : 1 + sequential_count + miss_count]
    hot = pool[-clients:]  # warmed before the hit run: every request of it is a hit
    (work / "redis").mkdir(parents=True)
    redis_server = RedisServer(free_port(), work / "redis")
    redis_server.start()
    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    raw["cache"] = {**raw["cache"], "url": redis_server.url}
    raw["learner"] = {**copy.deepcopy(raw["learner"]), "directory": str(work / "learner"), "hmac_key_file": str(work / "learner.key"),
                      "shadow": {**raw["learner"]["shadow"], "sample_rate": 0.0}}
    if placement is not None:
        raw["router"] = {**raw["router"], "placement": placement}
    config = parse_config(raw, folder=DEFAULT_CONFIG_PATH.parent, source="overhead benchmark config")
    assert config.router is not None
    port = free_port()
    try:
        with running_app(config, port=port, num_cpus=2) as url:
            assert config.router is not None
            router = RouterFactory(config).build(RouterStore(Path(config.router.store)).load_current())
            embedding = embedding_seconds(router, singles)
            in_process_per_s = batched_decisions_per_s(router, burst)
            timings = asyncio.run(sequential(url, pool[0], singles))
            before = router_stats(url)
            with Profiles(profile, "misses"):
                misses = asyncio.run(concurrent_routes(url, burst, clients, f"{clients} clients, misses"))
            misses["mean_batch_size"] = mean_batch(before, router_stats(url))
            asyncio.run(concurrent_routes(url, hot, clients, "warming the hit set"))
            with Profiles(profile, "hits"):
                hits = asyncio.run(concurrent_routes(url, (hot * (hit_count // len(hot) + 1))[:hit_count], clients, f"{clients} clients, hits"))
            healthz_load = asyncio.run(concurrent_routes(url, [None] * hit_count, clients, f"{clients} clients, /healthz"))
            with Profiles(profile, "chat"):
                http_chat = asyncio.run(chat_figures(url, ttft_repeats, max_tokens, config.general_expert))
            local_chat = asyncio.run(engine_figures(config, ttft_repeats, max_tokens))
    finally:
        redis_server.stop()
    healthz, hit, miss, embed = (p50_ms(timings["healthz"]), p50_ms(timings["hit"]), p50_ms(timings["miss"]), p50_ms(embedding))
    goals = {
        "hit_p50 <= 1.3 x healthz_p50": [round(hit / healthz, 2), hit <= 1.3 * healthz],
        "miss_p50 <= healthz_p50 + 1.5 x embedding_p50": [round(miss / (healthz + 1.5 * embed), 2), miss <= healthz + 1.5 * embed],
        "misses/s >= 0.7 x in-process batched": [round(misses["per_s"] / in_process_per_s, 2), misses["per_s"] >= 0.7 * in_process_per_s],
        "hits/s >= 10 x misses/s": [round(hits["per_s"] / misses["per_s"], 2), hits["per_s"] >= 10 * misses["per_s"]],
        "http ttft <= in-process ttft + 20 ms": [round(http_chat["ttft_p50_ms"] - local_chat["ttft_p50_ms"], 1),
                                                 http_chat["ttft_p50_ms"] <= local_chat["ttft_p50_ms"] + 20],
        "http tokens/s >= 0.9 x in-process (8 streams)": [
            round(http_chat["tokens_per_s_8_streams"] / local_chat["tokens_per_s_8_streams"], 2),
            http_chat["tokens_per_s_8_streams"] >= 0.9 * local_chat["tokens_per_s_8_streams"]],
    }
    return {
        "machine": {"cpus": os.cpu_count()},
        "clients": clients,
        "router_placement": config.router.placement,
        "one_client_p50_ms": {"healthz": healthz, "route_hit": hit, "route_miss": miss, "embedding_in_process": embed},
        "one_client_p99_ms": {"healthz": p99_ms(timings["healthz"]), "route_hit": p99_ms(timings["hit"]), "route_miss": p99_ms(timings["miss"])},
        "misses": {**misses, "in_process_batched_per_s": round(in_process_per_s, 2)},
        "hits": hits,
        "healthz_under_load": healthz_load,  # what the proxy and ingress alone can answer: the ceiling for hits
        "chat": {"http": http_chat, "in_process": local_chat, "max_tokens": max_tokens},
        "goals": {name: {"ratio": value, "met": met} for name, (value, met) in goals.items()},
    }


def table(summary: dict[str, Any]) -> str:
    one = summary["one_client_p50_ms"]
    rows = [
        "| measure | figure |", "|---|---|",
        f"| `/healthz` p50 | {one['healthz']} ms |",
        f"| `/v1/route` hit p50 | {one['route_hit']} ms |",
        f"| `/v1/route` miss p50 | {one['route_miss']} ms (embedding alone {one['embedding_in_process']} ms) |",
        f"| {summary['clients']} clients, misses | {summary['misses']['per_s']}/s, p50 {summary['misses']['p50_ms']} ms, "
        f"mean batch {summary['misses']['mean_batch_size']} (in-process batched {summary['misses']['in_process_batched_per_s']}/s) |",
        f"| {summary['clients']} clients, hits | {summary['hits']['per_s']}/s, p50 {summary['hits']['p50_ms']} ms, p99 {summary['hits']['p99_ms']} ms |",
        f"| {summary['clients']} clients, `/healthz` | {summary['healthz_under_load']['per_s']}/s, "
        f"p50 {summary['healthz_under_load']['p50_ms']} ms (the HTTP path's own ceiling) |",
        f"| chat TTFT p50 | HTTP {summary['chat']['http']['ttft_p50_ms']} ms, in-process {summary['chat']['in_process']['ttft_p50_ms']} ms |",
        f"| 8 streams | HTTP {summary['chat']['http']['tokens_per_s_8_streams']} tok/s, "
        f"in-process {summary['chat']['in_process']['tokens_per_s_8_streams']} tok/s |",
        "", "| goal | ratio | met |", "|---|---|---|",
    ]
    rows += [f"| {name} | {goal['ratio']} | {'yes' if goal['met'] else 'no'} |" for name, goal in summary["goals"].items()]
    return "\n".join(rows)


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    one = summary["one_client_p50_ms"]
    figure, (left, right) = plt.subplots(1, 2, figsize=(11, 4))
    names = ["healthz", "route_hit", "route_miss", "embedding_in_process"]
    left.bar(names, [one[name] for name in names], color=["grey", "tab:green", "tab:orange", "tab:blue"])
    left.set_ylabel("p50 latency, one client (ms)")
    left.set_title("What one request pays")
    rates = {"misses (HTTP)": summary["misses"]["per_s"], "misses (in-process)": summary["misses"]["in_process_batched_per_s"],
             "hits (HTTP)": summary["hits"]["per_s"], "/healthz (HTTP)": summary["healthz_under_load"]["per_s"]}
    right.bar(list(rates), list(rates.values()), color=["tab:orange", "tab:blue", "tab:green", "grey"])
    right.set_ylabel("decisions/s")
    right.set_title(f"{summary['clients']} concurrent clients")
    for axis in (left, right):
        axis.tick_params(axis="x", labelrotation=15)
    figure.tight_layout()
    figure.savefig(path, dpi=100)
    plt.close(figure)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="Fewer requests (a few minutes on 2 cores).")
    parser.add_argument("--clients", type=int, default=64, help="Concurrent clients for the throughput runs.")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    parser.add_argument("--profile", type=Path, help="Also write py-spy flame graphs (SVG) of the proxy, ingress, router and expert here.")
    parser.add_argument("--placement", choices=["deployment", "ingress"], help="router.placement to measure (default: the config's).")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="coe-bench-overhead-") as work:
        summary = run(args.quick, args.clients, Path(work), args.profile, args.placement)
    save(args.out, "overhead", summary, plot)
    print(table(summary))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
