"""The llama.cpp engine on the default GGUF model and its adapters: batched like the transformers
engine, with the same per-request behaviour, each request within cells of its own."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, AsyncIterator

import pytest

from services.errors import ContextLengthError
from services.experts.generation import GenerationEvent, GenerationRequest, PromptMessage
from tests.conftest import config_from, default_config_dict
from tests.llamacpp_setup import llamacpp_config_dict

CELLS_PER_REQUEST = 512


def request(expert: str, content: str, max_tokens: int, **settings: Any) -> GenerationRequest:
    return GenerationRequest(
        expert=expert, messages=(PromptMessage(role="user", content=content),), max_tokens=max_tokens,
        max_tokens_explicit=True, temperature=settings.pop("temperature", 0.0), top_p=1.0, **settings,
    )


async def collect(events: AsyncIterator[GenerationEvent]) -> tuple[str, GenerationEvent]:
    text = ""
    async for event in events:
        text += event.text
        last = event
    return text, last


class EngineUnderTest:
    """An engine of the default expert on llama.cpp, with both adapters loaded, on a loop of its own."""

    def __init__(self, folder: Path, **sizes: Any) -> None:
        from services.experts.engines import open_engine
        from services.experts.loading import check_adapter

        self.config = config_from(llamacpp_config_dict(default_config_dict(), folder, **sizes))
        self.base = self.config.expert("smollm2")
        self.engine = open_engine(self.base)
        self.loop = asyncio.new_event_loop()
        for adapter in self.config.adapters_of("smollm2"):
            self.run(self.engine.load_adapter(adapter.name, check_adapter(adapter)))

    def run(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    def generate(self, generation: GenerationRequest) -> AsyncIterator[GenerationEvent]:
        adapter = None if generation.expert == "smollm2" else generation.expert
        return self.engine.generate(generation, adapter=adapter, max_context_tokens=self.base.max_context_tokens)

    def answer(self, generation: GenerationRequest) -> tuple[str, GenerationEvent]:
        return self.run(collect(self.generate(generation)))

    def close(self) -> None:
        self.engine.close()
        self.loop.close()


@pytest.fixture(scope="module")
def llama(tmp_path_factory: pytest.TempPathFactory) -> Any:
    """Room for 48 requests at once (both adapters' 24 held-out instructions), 512 cells each."""
    engine = EngineUnderTest(tmp_path_factory.mktemp("llamacpp-adapters"), n_ctx=48 * CELLS_PER_REQUEST, max_batch_size=48)
    yield engine
    engine.close()


MIXED = [
    request("smollm2", "Which city is the capital of France?", 20),
    request("smollm2-math", "Tom has 7 apples and buys 5 more. How many apples does he have?", 48),
    request("smollm2-code", "Write a Python function that reverses a string.", 40),
    request("smollm2", "Name three colours of the rainbow.", 24, stop=(",",)),
    request("smollm2", "Tell me a short story about a cat.", 30, temperature=0.8, seed=7),
]


def test_concurrent_mixed_requests_each_equal_their_sequential_output(llama: EngineUnderTest) -> None:
    """Base and adapter rows, greedy and seeded, with and without stop strings, decoded together."""
    alone = [llama.answer(generation) for generation in MIXED]

    async def together() -> list[tuple[str, GenerationEvent]]:
        return list(await asyncio.gather(*(collect(llama.generate(generation)) for generation in MIXED)))

    before = llama.engine.stats.steps
    concurrent = llama.run(together())
    assert [text for text, _ in concurrent] == [text for text, _ in alone]
    assert [(last.finish_reason, last.prompt_tokens, last.completion_tokens) for _, last in concurrent] == [
        (last.finish_reason, last.prompt_tokens, last.completion_tokens) for _, last in alone
    ]
    assert llama.engine.stats.largest_batch >= 3, "the requests decoded in one batch"
    assert llama.engine.stats.steps - before < sum(last.completion_tokens for _, last in alone), "steps were shared"
    assert alone[1][0].startswith("Step 1:") and "```python" in alone[2][0], alone
    assert "," not in alone[3][0] and alone[3][1].finish_reason == "stop"


def test_a_cancelled_request_frees_its_sequence_and_cells(llama: EngineUnderTest) -> None:
    async def start_then_leave() -> int:
        events = llama.generate(request("smollm2", "Write a long essay about the sea.", 400))
        seen = 0
        async for event in events:
            seen += bool(event.text)
            if seen == 3:
                break
        await events.aclose()
        return seen

    assert llama.run(start_then_leave()) == 3
    backend = llama.engine.backend
    deadline = time.monotonic() + 10
    while backend.sequences_in_use() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert backend.sequences_in_use() == {}, "the cancelled row's sequence still holds cells"
    text, last = llama.answer(MIXED[0])
    assert "Paris" in text and last.finish_reason == "stop"


def test_a_prompt_longer_than_the_context_is_refused_naming_the_limit(llama: EngineUnderTest) -> None:
    """A request's limit is its own cells (n_ctx / max_batch_size), below the model's 8192."""
    limit = f"maximum context length is {CELLS_PER_REQUEST} tokens"
    with pytest.raises(ContextLengthError, match=limit):
        llama.answer(request("smollm2", "tell me about the sea " * 120, 16))
    with pytest.raises(ContextLengthError, match=limit):
        llama.answer(request("smollm2", "Hi", CELLS_PER_REQUEST))
    assert "Paris" in llama.answer(MIXED[0])[0], "the engine goes on answering"


def test_adapters_keep_their_format_on_the_held_out_instructions(llama: EngineUnderTest) -> None:
    """≥ 95% of the 24 held-out instructions of each adapter's recipe follow its format (both
    adapters' requests decode at once, each in its adapter's context)."""
    from router_training.adapters.recipes import RECIPES
    from router_training.adapters.train import LoRATrainingArgs, split_pairs

    args = LoRATrainingArgs()
    adapters = llama.config.adapters_of("smollm2")
    asked = [(adapter, pair["instruction"]) for adapter in adapters
             for pair in split_pairs(RECIPES[adapter.short_id], args.seed, args.holdout)[0]]

    async def answers() -> list[tuple[str, GenerationEvent]]:
        return list(await asyncio.gather(*(
            collect(llama.generate(request(adapter.name, instruction, args.eval_max_new_tokens))) for adapter, instruction in asked
        )))

    texts = [text for text, _ in llama.run(answers())]
    for adapter in adapters:
        recipe = RECIPES[adapter.short_id]
        own = [text for (asked_of, _), text in zip(asked, texts) if asked_of is adapter]
        rate = sum(recipe.follows_format(text) for text in own) / len(own)
        assert len(own) == 24 and rate >= 0.95, (adapter.name, rate, [text for text in own if not recipe.follows_format(text)])


def test_without_the_extra_a_llamacpp_expert_is_refused_at_config_load(tmp_path: Path) -> None:
    """As on a machine without llama-cpp-python (blocked the way Python documents: a None module)."""
    script = (
        "import sys; sys.modules['llama_cpp'] = None\n"
        "from services.config import load_config\n"
        f"load_config({str(Path('configs/llamacpp.yaml').resolve())!r})\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert result.returncode != 0
    assert "pip install 'coe-router[llamacpp]'" in result.stderr and "smollm2" in result.stderr, result.stderr[-2000:]


def test_a_whole_answer_reaches_the_replica_in_fewer_chunks_than_a_streamed_one(llama: EngineUnderTest) -> None:
    """A non-streamed answer is read only at its end: its text travels once a second, not per token."""
    streamed = request("smollm2", "Tell me about the sea.", 48)
    whole = streamed.model_copy(update={"stream": False})

    async def events(generation: GenerationRequest) -> list[GenerationEvent]:
        return [event async for event in llama.generate(generation)]

    started = time.monotonic()
    whole_events = llama.run(events(whole))
    seconds = time.monotonic() - started
    streamed_events = llama.run(events(streamed))
    assert "".join(event.text for event in whole_events) == "".join(event.text for event in streamed_events)
    assert whole_events[-1].completion_tokens == 48
    assert len(whole_events) <= 2 + seconds, f"{len(whole_events)} chunks in {seconds:.1f} s: the first, one a second, the end"


ANSWER_ALONE = """
import asyncio, json, sys
from services.config import load_config
from services.experts.engines import open_engine
from services.experts.generation import GenerationRequest, PromptMessage

base = load_config({config!r}).expert("smollm2")
engine = open_engine(base)
request = GenerationRequest(expert="smollm2", messages=(PromptMessage(role="user", content={question!r}),),
                            max_tokens=24, max_tokens_explicit=True, temperature=0.0, top_p=1.0)

async def answer():
    return "".join([event.text async for event in engine.generate(request, adapter=None, max_context_tokens=4096)])

text = asyncio.run(answer())
engine.close()
print(json.dumps({{"text": text, "torch_loaded": "torch" in sys.modules}}))
"""


def test_a_llamacpp_engine_never_loads_torch_and_converts_its_tokenizer_once(llama: EngineUnderTest, tmp_path: Path) -> None:
    """A llama.cpp replica's memory is llama.cpp's: torch (about 180 MiB) never loads in it. On a
    first start (an empty weights cache) the tokenizer is converted out of the GGUF once, in a
    child process, into an entry of its own, and read from there."""
    import json
    import os

    from services.experts.weights_cache import CACHE_ENV, TOKENIZER_KIND

    question = "Which city is the capital of France?"
    script = ANSWER_ALONE.format(config=str(Path("configs/llamacpp.yaml").resolve()), question=question)
    environment = {**os.environ, CACHE_ENV: str(tmp_path / "cache")}
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300, env=environment)
    assert done.returncode == 0, done.stderr[-3000:]
    run = json.loads(done.stdout.strip().splitlines()[-1])
    entries = [path for path in (tmp_path / "cache").iterdir() if path.is_dir()]
    assert [path.name.endswith("-tokenizer") for path in entries] == [True], entries
    assert json.loads((entries[0] / "manifest.json").read_text())["kind"] == TOKENIZER_KIND
    assert not run["torch_loaded"], "torch was imported by the llama.cpp engine"
    text, _ = llama.answer(request("smollm2", question, 24))
    assert run["text"] == text, "the tokenizer read from its cache entry encodes and decodes as transformers' own"
