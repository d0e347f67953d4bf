"""LoRA experts multiplexed on one base: each request gets its own adapter, even when mixed, on
both engines (PEFT's mixed-adapter batches; llama.cpp's context per adapter)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

from tests.conftest import ServedApp


PROMPT = [{"role": "user", "content": "Add 17 and 25."}]


def answer(client: Any, model: str) -> Any:
    return client.chat.completions.create(model=model, messages=PROMPT, max_tokens=16, temperature=0)


def test_each_adapter_changes_the_answer_in_its_own_way(served_client: Any) -> None:
    math = answer(served_client, "smollm2-math").choices[0].message.content
    code = answer(served_client, "smollm2-code").choices[0].message.content
    base = answer(served_client, "smollm2").choices[0].message.content
    assert math.startswith("Step 1:") and "42" in math
    assert code.startswith("```python")
    assert not base.startswith("Step 1:") and not base.startswith("```python")


def test_alias_reaches_the_same_adapter(served_client: Any) -> None:
    completion = answer(served_client, "smollm2:math")
    assert completion.model == "smollm2-math"
    assert completion.choices[0].message.content.startswith("Step 1:")


def test_interleaved_concurrent_requests_never_mix_adapters(served_client: Any, served: ServedApp) -> None:
    sequential = {model: answer(served_client, model).choices[0].message.content for model in ("smollm2-math", "smollm2-code", "smollm2")}
    order = ["smollm2-math", "smollm2-code", "smollm2"] * 2
    with ThreadPoolExecutor(max_workers=len(order)) as pool:
        results = list(pool.map(lambda model: answer(served_client, model), order))
    for model, completion in zip(order, results):
        assert completion.model == model
        assert completion.choices[0].message.content == sequential[model], model
    stats = serve.get_deployment_handle("expert-smollm2", app_name=served.app_name).stats.remote().result()
    assert stats["largest_batch"] >= 2  # the concurrent requests were decoded together
