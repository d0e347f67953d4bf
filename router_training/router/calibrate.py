"""Find the cost weight λ that sends a target share of prompts to one expert.

Like RouteLLM's threshold calibration: stage 1 runs once over the prompts; the expert each
confident prompt gets is then a step function of λ, which changes only where two experts'
``s − λ·cost_norm`` cross. Every interval between those crossings is tried, and the λ whose
share is closest to the target is returned (the smallest such λ on ties).
"""

from __future__ import annotations

from dataclasses import dataclass

from services.router.pipeline import PreparedQuery, StaticRouter


@dataclass(frozen=True)
class Calibration:
    cost_weight: float
    share: float
    target: float
    candidates: int


def calibrate_cost_weight(router: StaticRouter, queries: list[PreparedQuery], expert: str, target: float) -> Calibration:
    decisions = router.decide(queries)
    confident = [decision.category for decision in decisions if not decision.uncertain]
    general_share = sum(decision.uncertain for decision in decisions) / len(decisions) if expert == router.general_expert else 0.0
    crossings = router.table.crossings()
    candidates = sorted({0.0, *crossings, *(point + 1e-6 for point in crossings)})
    best: Calibration | None = None
    for weight in candidates:
        hits = sum(router.table.rank(category, weight)[0].expert == expert for category in confident)
        share = hits / len(decisions) + general_share
        if best is None or abs(share - target) < abs(best.share - target) - 1e-12:
            best = Calibration(cost_weight=weight, share=share, target=target, candidates=len(candidates))
    assert best is not None
    return best
