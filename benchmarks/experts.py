"""Expert engines: the llama.cpp expert against raw llama.cpp and the transformers expert.

Measured in one run, on the same GGUF file and the same prompts, one after the other (never two
at once on the same cores):

- single stream: completion tokens/s and time to first token of streamed greedy answers, for
  the ``llamacpp`` expert through Serve and HTTP, for ``llama_cpp.Llama`` in this process (the
  ceiling), and for the transformers (``gguf``) expert through Serve and HTTP;
- aggregate completion tokens/s with 1, 2, 4 and 8 streams in flight, for both engines;
- load time and resident memory of each expert replica (as the replica reports them), when it is
  ready and after the streams (the figure compared: what a replica must be given to serve);
- greedy agreement: on 50 prompts of the project's own test split, the share whose first 16
  tokens are the same on both engines (llama.cpp computes with quantised kernels, so an exact
  match is not expected).

Each app holds only the expert (no router, cache or learner). Usage:

    coe bench experts [--max-tokens 64] [--levels 1,2,4,8] [--agreement-prompts 50] [--quick]

Writes ``experts.json`` and ``experts.png`` to ``benchmarks/results/`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import asyncio
import copy
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from _report import RESULTS_DIR, machine, save
from batching import PROMPTS, measure
from tqdm.auto import tqdm

from deployments.local import free_port

ENGINES = {"transformers": "gguf", "llamacpp": "llamacpp"}
AGREEMENT_TOKENS = 16


def expert_only_config(kind: str) -> Any:
    """The default expert alone, on the engine of ``kind``."""
    import yaml

    from services.config import DEFAULT_CONFIG_PATH, parse_config

    raw = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text(encoding="utf-8"))
    base = copy.deepcopy(next(expert for expert in raw["experts"] if expert["name"] == raw["default_expert"]))
    base["kind"] = kind
    folder = Path(tempfile.mkdtemp(prefix="coe-bench-experts-"))
    raw.update(experts=[base], cache={"enabled": False}, app_name="coe-bench-experts",
               learner={"enabled": False, "directory": str(folder / "learner"), "hmac_key_file": str(folder / "learner.key")})
    raw.pop("router", None)
    raw.pop("training", None)
    return parse_config(raw, folder=DEFAULT_CONFIG_PATH.parent, source=f"the {kind} expert alone")


def agreement_prompts(count: int) -> list[str]:
    """The test split's prompts, one category after another in turn, up to ``count``."""
    from router_training.router.data import DATA_DIR, read_examples
    from services.config import load_config

    by_category: dict[str, list[str]] = {}
    for example in read_examples(DATA_DIR / "test.jsonl", load_config().router.categories, require_category=False):
        by_category.setdefault(example.category or "none", []).append(example.messages[-1]["content"])
    prompts: list[str] = []
    while len(prompts) < count and any(by_category.values()):
        for rows in by_category.values():
            if rows and len(prompts) < count:
                prompts.append(rows.pop(0))
    return prompts


async def stream_once(client: httpx.AsyncClient, prompt: str, max_tokens: int) -> dict[str, float]:
    """One streamed greedy answer: seconds to the first content and completion tokens."""
    body = {"model": "smollm2", "messages": [{"role": "user", "content": prompt}], "max_tokens": max_tokens,
            "temperature": 0, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first: float | None = None
    tokens = 0
    async with client.stream("POST", "/v1/chat/completions", json=body) as response:
        response.raise_for_status()
        async for line in response.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            event = json.loads(line[len("data: "):])
            if first is None and event.get("choices") and event["choices"][0]["delta"].get("content"):
                first = time.perf_counter() - started
            if event.get("usage"):
                tokens = event["usage"]["completion_tokens"]
    return {"ttft_s": first if first is not None else time.perf_counter() - started,
            "seconds": time.perf_counter() - started, "tokens": tokens}


def summarise_single(runs: list[dict[str, float]]) -> dict[str, float]:
    tokens = sum(run["tokens"] for run in runs)
    seconds = sum(run["seconds"] for run in runs)
    ttfts = sorted(run["ttft_s"] for run in runs)
    return {"tokens_per_s": tokens / seconds, "ttft_p50_ms": 1000 * ttfts[len(ttfts) // 2], "answers": len(runs), "tokens": tokens}


async def single_stream(url: str, prompts: list[str], max_tokens: int) -> dict[str, float]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        await stream_once(client, prompts[0], 8)  # warm-up: first-request costs are not the engine's
        return summarise_single([await stream_once(client, prompt, max_tokens) for prompt in prompts])


async def greedy_texts(url: str, prompts: list[str]) -> list[str]:
    async with httpx.AsyncClient(base_url=url, timeout=600) as client:
        limit = asyncio.Semaphore(8)

        async def one(prompt: str) -> str:
            async with limit:
                response = await client.post("/v1/chat/completions", json={
                    "model": "smollm2", "messages": [{"role": "user", "content": prompt}],
                    "max_tokens": AGREEMENT_TOKENS, "temperature": 0})
                response.raise_for_status()
                return response.json()["choices"][0]["message"]["content"]

        return list(await asyncio.gather(*(one(prompt) for prompt in prompts)))


def measure_engine(kind: str, prompts: list[str], agreement: list[str], max_tokens: int, levels: list[int]) -> dict[str, Any]:
    from deployments.local import running_app

    with running_app(expert_only_config(kind), port=free_port()) as url:
        at_ready = httpx.get(f"{url}/readyz", timeout=30).json()["deployments"]["expert-smollm2"]
        single = asyncio.run(single_stream(url, prompts, max_tokens))
        aggregate = []
        for level in tqdm(levels, desc=f"{kind}: streams in flight", leave=False):
            aggregate.append(asyncio.run(measure(url, "smollm2", max(level, 2) * 2, level, max_tokens)))
        serving = httpx.get(f"{url}/readyz", timeout=30).json()["deployments"]["expert-smollm2"]
        texts = asyncio.run(greedy_texts(url, agreement))
    # Memory after the load, not at start: weights mapped from a file count only once they are
    # read, and transformers reads its float32 weights at the first answer.
    return {"single": single, "aggregate": aggregate, "load_seconds": at_ready["load_seconds"],
            "resident_memory_bytes": serving["resident_memory_bytes"],
            "resident_memory_at_ready_bytes": at_ready["resident_memory_bytes"], "greedy_texts": texts}


def raw_llama_single(prompts: list[str], max_tokens: int, flash_attention: bool) -> dict[str, Any]:
    """``llama_cpp.Llama`` in this process: the same file, threads and prompt tokens, nothing around it.

    ``flash_attention=False`` is the engine's own setting (its CPU kernel is not batch-invariant),
    so the ratio to it measures what the engine and Serve add; ``True`` is llama-cpp-python's
    default, reported beside it for what that choice costs.

    The prompt is rendered by the expert's own chat template (with its default system prompt), as
    the service renders it: llama-cpp-python's built-in chat formats would send a shorter prompt.
    Each answer prefills its whole prompt, as the engine does: ``Llama`` would otherwise keep the
    previous prompt's cells and skip the system prompt they share.
    """
    import llama_cpp

    from services.experts.engine import prompt_token_ids
    from services.experts.loading import load_tokenizer, locate_weights

    base = expert_only_config("llamacpp").expert("smollm2")
    tokenizer = load_tokenizer(base)
    started = time.perf_counter()
    model = llama_cpp.Llama(str(locate_weights(base).weights_path), n_ctx=base.llamacpp.n_ctx,
                            n_threads=base.llamacpp.threads or os.cpu_count(), flash_attn=flash_attention, verbose=False)
    load_seconds = time.perf_counter() - started

    def once(prompt: str, tokens: int) -> dict[str, float]:
        prompt_ids = prompt_token_ids(tokenizer, [{"role": "user", "content": prompt}])
        model.reset()
        begun = time.perf_counter()
        first: float | None = None
        count = 0
        for chunk in model.create_completion(prompt_ids, temperature=0.0, max_tokens=tokens, stream=True):
            if chunk["choices"] and chunk["choices"][0]["text"]:
                first = first if first is not None else time.perf_counter() - begun
                count += 1  # a streamed chunk is one token here
        return {"ttft_s": first or time.perf_counter() - begun, "seconds": time.perf_counter() - begun, "tokens": count}

    once(prompts[0], 8)
    single = summarise_single([once(prompt, max_tokens) for prompt in prompts])
    return {"single": single, "load_seconds": load_seconds}


def first_tokens_agree(left: list[str], right: list[str], tokenizer: Any) -> float:
    same = sum(tokenizer(a, add_special_tokens=False)["input_ids"][:AGREEMENT_TOKENS]
               == tokenizer(b, add_special_tokens=False)["input_ids"][:AGREEMENT_TOKENS] for a, b in zip(left, right))
    return same / max(1, len(left))


def run(max_tokens: int, levels: list[int], agreement_count: int, single_prompts: int) -> dict[str, Any]:
    from services.experts.loading import load_tokenizer

    prompts = [PROMPTS[index % len(PROMPTS)] for index in range(single_prompts)]
    agreement = agreement_prompts(agreement_count)
    engines = {name: measure_engine(kind, prompts, agreement, max_tokens, levels)
               for name, kind in tqdm(ENGINES.items(), desc="engines")}
    raw = raw_llama_single(prompts, max_tokens, flash_attention=False)
    raw_default = raw_llama_single(prompts, max_tokens, flash_attention=True)
    tokenizer = load_tokenizer(expert_only_config("gguf").expert("smollm2"))
    share = first_tokens_agree(engines["transformers"].pop("greedy_texts"), engines["llamacpp"].pop("greedy_texts"), tokenizer)
    at_most = {name: max(row["tokens_per_s"] for row in result["aggregate"] if row["concurrency"] == max(levels))
               for name, result in engines.items()}
    ratios = {
        "single_serve_vs_raw": engines["llamacpp"]["single"]["tokens_per_s"] / raw["single"]["tokens_per_s"],
        "single_serve_vs_raw_flash_attention": engines["llamacpp"]["single"]["tokens_per_s"] / raw_default["single"]["tokens_per_s"],
        "single_llamacpp_vs_transformers": engines["llamacpp"]["single"]["tokens_per_s"] / engines["transformers"]["single"]["tokens_per_s"],
        f"aggregate_{max(levels)}_llamacpp_vs_transformers": at_most["llamacpp"] / at_most["transformers"],
        "memory_llamacpp_vs_transformers": engines["llamacpp"]["resident_memory_bytes"] / engines["transformers"]["resident_memory_bytes"],
        "load_llamacpp_vs_transformers": engines["llamacpp"]["load_seconds"] / engines["transformers"]["load_seconds"],
    }
    goals = {
        "single stream through Serve >= 0.8 x raw llama.cpp": ratios["single_serve_vs_raw"] >= 0.8,
        f"aggregate at {max(levels)} streams >= 2 x transformers": ratios[f"aggregate_{max(levels)}_llamacpp_vs_transformers"] >= 2.0,
        "memory per replica <= 0.5 x transformers": ratios["memory_llamacpp_vs_transformers"] <= 0.5,
    }
    return {"machine": machine(), "max_tokens": max_tokens, "levels": levels, "engines": engines, "raw_llama_cpp": raw,
            "raw_llama_cpp_flash_attention": raw_default,
            "greedy_agreement": {"prompts": len(agreement), "first_tokens": AGREEMENT_TOKENS, "share_identical": share},
            "ratios": ratios, "goals": goals}


def plot(summary: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(6.5, 4))
    for name, result in summary["engines"].items():
        rows = result["aggregate"]
        axis.plot([row["concurrency"] for row in rows], [row["tokens_per_s"] for row in rows], marker="o", label=name)
    axis.axhline(summary["raw_llama_cpp"]["single"]["tokens_per_s"], color="grey", linestyle="--", label="raw llama.cpp, one stream")
    axis.set_xlabel("streams in flight")
    axis.set_ylabel("completion tokens / s")
    axis.set_xticks(summary["levels"])
    axis.set_title(f"Expert engines, {summary['max_tokens']} tokens per answer")
    axis.legend()
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def print_table(summary: dict[str, Any]) -> None:
    engines, raw, fast = summary["engines"], summary["raw_llama_cpp"], summary["raw_llama_cpp_flash_attention"]
    print(f"\nexpert engines on {summary['machine']['cpu']}, {summary['machine']['cores']} cores, {summary['max_tokens']} tokens per answer")
    print(f"{'':<28}{'transformers':>14}{'llamacpp':>12}{'raw llama.cpp':>15}{'raw, flash attn':>17}")
    print(f"{'single stream tokens/s':<28}{engines['transformers']['single']['tokens_per_s']:>14.1f}"
          f"{engines['llamacpp']['single']['tokens_per_s']:>12.1f}{raw['single']['tokens_per_s']:>15.1f}{fast['single']['tokens_per_s']:>17.1f}")
    print(f"{'time to first token p50 ms':<28}{engines['transformers']['single']['ttft_p50_ms']:>14.0f}"
          f"{engines['llamacpp']['single']['ttft_p50_ms']:>12.0f}{raw['single']['ttft_p50_ms']:>15.0f}{fast['single']['ttft_p50_ms']:>17.0f}")
    for index, level in enumerate(summary["levels"]):
        print(f"{f'aggregate tokens/s, {level} in flight':<28}{engines['transformers']['aggregate'][index]['tokens_per_s']:>14.1f}"
              f"{engines['llamacpp']['aggregate'][index]['tokens_per_s']:>12.1f}")
    print(f"{'load s':<28}{engines['transformers']['load_seconds']:>14.2f}{engines['llamacpp']['load_seconds']:>12.2f}{raw['load_seconds']:>15.2f}")
    for label, key in (("replica memory MiB, ready", "resident_memory_at_ready_bytes"),
                       ("replica memory MiB, serving", "resident_memory_bytes")):
        print(f"{label:<28}{engines['transformers'][key] / 2**20:>14.0f}{engines['llamacpp'][key] / 2**20:>12.0f}")
    agreement = summary["greedy_agreement"]
    print(f"greedy agreement: {agreement['share_identical']:.0%} of {agreement['prompts']} prompts have the same first {agreement['first_tokens']} tokens")
    for name, value in summary["ratios"].items():
        print(f"{name}: {value:.2f}")
    for goal, met in summary["goals"].items():
        print(f"{'met' if met else 'NOT met'}: {goal}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--max-tokens", type=int, default=64)
    parser.add_argument("--levels", default="1,2,4,8", help="Streams in flight for the aggregate figures.")
    parser.add_argument("--agreement-prompts", type=int, default=50)
    parser.add_argument("--single-prompts", type=int, default=8)
    parser.add_argument("--quick", action="store_true", help="A short run: 16 tokens, streams 1 and 4, 8 prompts.")
    parser.add_argument("--out", type=Path, default=RESULTS_DIR)
    args = parser.parse_args(argv)
    if args.quick:
        args.max_tokens, args.levels, args.agreement_prompts, args.single_prompts = 16, "1,4", 8, 2
    summary = run(args.max_tokens, [int(level) for level in args.levels.split(",")], args.agreement_prompts, args.single_prompts)
    print_table(summary)
    save(args.out, "experts", summary, plot)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
