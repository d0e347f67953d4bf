"""The router deployment's batch step hands each request its own decision, or fails loudly."""

from __future__ import annotations

from typing import Any

import pytest

from deployments.router import _decide_grouped


def test_a_router_that_loses_a_decision_fails_the_batch_instead_of_shifting_answers(static_router: Any) -> None:
    queries = [static_router.prepare([{"role": "user", "content": text}], None) for text in ("What is 2+2?", "Write a haiku.", "Fix my SQL.")]
    decided = _decide_grouped([(static_router, query) for query in queries])
    assert [decision.category for decision in decided] == [static_router.decide([query])[0].category for query in queries]

    class LossyRouter:
        """The real router, except that it drops the middle decision of a batch."""

        version = static_router.version

        def decide(self, batch: list[Any]) -> list[Any]:
            decisions = static_router.decide(batch)
            return decisions[:1] + decisions[2:]

    lossy = LossyRouter()
    with pytest.raises(RuntimeError, match="returned 2 decisions for 3 requests"):
        _decide_grouped([(lossy, query) for query in queries])
