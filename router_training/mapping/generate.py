"""Answers from every expert to the same prompts, for scoring.

The serving code does the generating: local experts through the same continuous-batching
engine the deployments run (one engine per base model, its LoRA experts as mixed-adapter rows),
remote experts through the same OpenAI-compatible client. On a Ray cluster each base model gets
a Ray actor of its own, so the bases generate in parallel on different nodes.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any

from tqdm.auto import tqdm

from services.artifacts import signing_key
from services.config import AppConfig
from services.experts.config import LOCAL_BASE_KINDS, LocalBaseExpert, LoRAExpert, OpenAIExpert
from services.experts.generation import GenerationRequest, PromptMessage

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Task:
    expert: str
    messages: tuple[dict[str, str], ...]
    max_tokens: int | None = None  # None: the run's limit


def request_for(task: Task, max_tokens: int) -> GenerationRequest:
    """Greedy, bounded: every expert gets the same deterministic chance."""
    max_tokens = task.max_tokens or max_tokens
    messages = tuple(
        PromptMessage(role="system" if message["role"] == "developer" else message["role"], content=message["content"])
        for message in task.messages
    )
    return GenerationRequest(
        expert=task.expert, messages=messages, max_tokens=max_tokens, max_tokens_explicit=False, temperature=0.0, top_p=1.0
    )


async def _collect(stream: Any) -> str:
    return "".join([event.text async for event in stream])


async def generate_local(
    base: LocalBaseExpert, adapters: list[LoRAExpert], tasks: list[Task], max_tokens: int, key: bytes | None = None
) -> list[str]:
    """All of one base model's tasks (base and adapter rows mixed) through one batching engine.

    ``key``: the artifact signing key, if configured, for the base model's converted weights."""
    from services.experts.engines import open_engine
    from services.experts.loading import check_adapter

    engine = open_engine(base, key)
    try:
        by_name = {adapter.name: adapter for adapter in adapters}
        for name in sorted({task.expert for task in tasks} & set(by_name)):
            await engine.load_adapter(name, check_adapter(by_name[name]))
        with tqdm(total=len(tasks), desc=f"generating with {base.name}", unit="answer") as progress:

            async def one(task: Task) -> str:
                adapter = task.expert if task.expert in by_name else None
                limit = by_name[adapter].max_context_tokens if adapter else base.max_context_tokens
                text = await _collect(engine.generate(request_for(task, max_tokens), adapter=adapter, max_context_tokens=limit))
                progress.update()
                return text

            return list(await asyncio.gather(*(one(task) for task in tasks)))
    finally:
        engine.close()


async def generate_remote(expert: OpenAIExpert, tasks: list[Task], max_tokens: int, concurrency: int = 8) -> list[str]:
    from services.experts.remote import RemoteChatBackend

    backend = RemoteChatBackend(expert)
    limit = asyncio.Semaphore(concurrency)

    async def one(task: Task) -> str:
        async with limit:
            return await _collect(backend.generate(request_for(task, max_tokens)))

    try:
        return list(await asyncio.gather(*(one(task) for task in tasks)))
    finally:
        await backend.close()


def _groups(config: AppConfig, tasks: list[Task]) -> dict[str, list[int]]:
    """Task indices per deployment (a LoRA expert's tasks go with its base)."""
    groups: dict[str, list[int]] = {}
    for index, task in enumerate(tasks):
        groups.setdefault(config.deployment_name_for(task.expert), []).append(index)
    return groups


def _local_shard(
    base: LocalBaseExpert, adapters: list[LoRAExpert], tasks: list[Task], max_tokens: int, key: bytes | None
) -> list[str]:
    """One worker process's share: its own engine, on one torch thread."""
    from services.experts.loading import force_offline

    force_offline()
    single = base.model_copy(update={"batching": base.batching.model_copy(update={"torch_threads": 1})})
    return asyncio.run(generate_local(single, adapters, tasks, max_tokens, key))


def generate_in_processes(
    base: LocalBaseExpert,
    adapters: list[LoRAExpert],
    tasks: list[Task],
    max_tokens: int,
    processes: int,
    key: bytes | None = None,
) -> list[str]:
    """Split one base model's tasks over ``processes`` engines of one thread each.

    Decoding a small model does not keep two cores busy from one engine (measured with
    SmolLM2 on 2 cores: two threads are only 1.25× faster than one), so on a machine without
    a Ray cluster, one single-threaded engine per core answers sooner than one engine with
    every core.
    """
    if processes <= 1 or len(tasks) < 2:
        return asyncio.run(generate_local(base, adapters, tasks, max_tokens, key))
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    shards = [list(range(start, len(tasks), processes)) for start in range(processes)]
    answers = [""] * len(tasks)
    with ProcessPoolExecutor(max_workers=processes, mp_context=multiprocessing.get_context("spawn")) as pool:
        futures = [pool.submit(_local_shard, base, adapters, [tasks[i] for i in shard], max_tokens, key) for shard in shards]
        for shard, future in zip(shards, futures):
            for index, text in zip(shard, future.result()):
                answers[index] = text
    return answers


def with_batch_size(config: AppConfig, batch_size: int) -> AppConfig:
    """The config with every local model decoding up to ``batch_size`` rows together.

    Offline nobody waits for one answer, so rows can be many more than serving uses: with
    SmolLM2 on one thread per process, 32 rows answered 96 verifiable tasks 1.4x faster than 8.
    """
    experts = [
        expert.model_copy(update={"batching": expert.batching.model_copy(update={"max_batch_size": batch_size})})
        if isinstance(expert, LOCAL_BASE_KINDS) else expert
        for expert in config.experts
    ]
    return config.model_copy(update={"experts": experts})


def generate(
    config: AppConfig,
    tasks: list[Task],
    max_tokens: int,
    *,
    use_ray: bool = False,
    processes: int = 1,
    batch_size: int | None = None,
) -> list[str]:
    """Answers in the order of ``tasks``: on Ray actors, or here in ``processes`` processes per base model."""
    if batch_size is not None:
        config = with_batch_size(config, batch_size)
    answers: list[str] = [""] * len(tasks)
    groups = _groups(config, tasks)
    if use_ray:
        return _generate_on_ray(config, tasks, groups, max_tokens)
    key = signing_key(config)
    for indices in groups.values():
        expert = config.expert(tasks[indices[0]].expert)
        subset = [tasks[index] for index in indices]
        if isinstance(expert, OpenAIExpert):
            texts = asyncio.run(generate_remote(expert, subset, max_tokens))
        else:
            base = config.expert(expert.base) if isinstance(expert, LoRAExpert) else expert
            assert isinstance(base, LOCAL_BASE_KINDS)
            texts = generate_in_processes(base, config.adapters_of(base.name), subset, max_tokens, processes, key)
        for index, text in zip(indices, texts):
            answers[index] = text
    return answers


def _generate_on_ray(config: AppConfig, tasks: list[Task], groups: dict[str, list[int]], max_tokens: int) -> list[str]:
    import ray

    @ray.remote
    class GenerationWorker:
        """One base model (or remote expert) per actor; Ray places the actors across the cluster."""

        def generate(self, config: AppConfig, subset: list[Task], max_tokens: int) -> list[str]:
            from services.experts.loading import force_offline

            force_offline()
            return generate(config, subset, max_tokens, use_ray=False)

    futures = {}
    for name, indices in groups.items():
        expert = config.expert(tasks[indices[0]].expert)
        options = expert.deployment if not isinstance(expert, LoRAExpert) else config.expert(expert.base).deployment
        worker = GenerationWorker.options(num_cpus=options.num_cpus, name=None).remote()
        futures[name] = worker.generate.remote(config, [tasks[index] for index in indices], max_tokens)
        logger.info("generating %d answers for %s on a Ray actor", len(indices), name)
    answers: list[str] = [""] * len(tasks)
    for name, future in futures.items():
        for index, text in zip(groups[name], ray.get(future)):
            answers[index] = text
    return answers
