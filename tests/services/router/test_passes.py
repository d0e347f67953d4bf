"""Merged embedding passes: requests that arrive during a pass share the next one."""

from __future__ import annotations

import asyncio
import threading

from services.router.passes import CoalescingPasses


def test_batches_arriving_during_a_pass_share_the_next_and_errors_reach_only_their_pass() -> None:
    started = threading.Event()
    release = threading.Event()
    seen: list[list[int]] = []

    def compute(rows: list[int]) -> list[int]:
        seen.append(rows)
        if len(seen) == 1:
            started.set()
            release.wait(10)  # the first pass is slow: later batches pile up meanwhile
        if -1 in rows:
            raise ValueError("a broken row")
        return [row * 10 for row in rows]

    async def scenario() -> tuple[list[int], list[object]]:
        passes: CoalescingPasses[int, int] = CoalescingPasses(compute, max_rows=32)
        first = asyncio.ensure_future(passes.run([1]))
        await asyncio.to_thread(started.wait, 10)
        later = [asyncio.ensure_future(passes.run([value])) for value in (2, 3, 4)]
        await asyncio.sleep(0.05)
        release.set()
        results = [await first] + [await future for future in later]
        broken = await asyncio.gather(passes.run([-1]), return_exceptions=True)
        assert await passes.run([5]) == [50], "the pass after a failed one runs"
        return [value for result in results for value in result], broken

    values, broken = asyncio.run(scenario())
    assert values == [10, 20, 30, 40]
    assert seen[:2] == [[1], [2, 3, 4]], "the three batches that waited shared one pass"
    assert isinstance(broken[0], ValueError), "the broken pass's caller got its error"
