"""LoRA experts multiplexed on one base: each request gets its own adapter, even when mixed."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Any

from ray import serve

PROMPT = [{"role": "user", "content": "Add 17 and 25."}]


def answer(client: Any, model: str) -> Any:
    return client.chat.completions.create(model=model, messages=PROMPT, max_tokens=16, temperature=0)


def test_each_adapter_changes_the_answer_in_its_own_way(openai_client: Any) -> None:
    math = answer(openai_client, "smollm2-math").choices[0].message.content
    code = answer(openai_client, "smollm2-code").choices[0].message.content
    base = answer(openai_client, "smollm2").choices[0].message.content
    assert math.startswith("Step 1:") and "42" in math
    assert code.startswith("```python")
    assert not base.startswith("Step 1:") and not base.startswith("```python")


def test_alias_reaches_the_same_adapter(openai_client: Any) -> None:
    completion = answer(openai_client, "smollm2:math")
    assert completion.model == "smollm2-math"
    assert completion.choices[0].message.content.startswith("Step 1:")


def test_interleaved_concurrent_requests_never_mix_adapters(openai_client: Any, base_url: str) -> None:
    sequential = {model: answer(openai_client, model).choices[0].message.content for model in ("smollm2-math", "smollm2-code", "smollm2")}
    order = ["smollm2-math", "smollm2-code", "smollm2"] * 2
    with ThreadPoolExecutor(max_workers=len(order)) as pool:
        results = list(pool.map(lambda model: answer(openai_client, model), order))
    for model, completion in zip(order, results):
        assert completion.model == model
        assert completion.choices[0].message.content == sequential[model], model
    stats = serve.get_deployment_handle("expert-smollm2", app_name="coe").stats.remote().result()
    assert stats["largest_batch"] >= 2  # the concurrent requests were decoded together
