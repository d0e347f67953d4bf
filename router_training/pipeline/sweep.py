"""Quality against cost as the routing knobs move (the CoE / RouteLLM trade-off curve).

Every expert has answered the same prompts and every answer has a quality in [0, 1] (the
mapping job: a check's result, or the reward model's preference over the general expert). For
each setting of λ (cost weight) and τ (confidence threshold) the router picks an expert per
prompt; that answer's quality is the routed quality, its expert's cost the price. Single experts
and the per-prompt oracle are the reference points.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from router_training.mapping.job import MappingResult
from services.router.decision import RoutingKnobs
from services.router.pipeline import StaticRouter


@dataclass(frozen=True)
class Point:
    label: str
    cost_weight: float | None
    confidence_threshold: float | None
    quality: float  # mean quality of the chosen answers
    cost: float  # mean cost of the chosen experts
    fallback_share: float
    budget: float | None = None  # the budget on the experts' total cost (budget sweep only)


def sweep(router: StaticRouter, result: MappingResult, costs: dict[str, float], lambdas: list[float], taus: list[float]) -> list[Point]:
    points = []
    settings = [(weight, None) for weight in lambdas] + [(0.0, tau) for tau in taus]
    embedded = router.embed([router.prepare(example.messages) for example in result.examples])
    for weight, tau in settings:
        knobs = RoutingKnobs(cost_weight=weight, confidence_threshold=tau)
        decisions = router.decide_embedded([router.prepare(example.messages, knobs) for example in result.examples], embedded)
        chosen_quality = [result.quality[decision.expert][index] for index, decision in enumerate(decisions)]
        points.append(
            Point(
                label=f"λ={weight:g}" if tau is None else f"τ={tau:g}",
                cost_weight=weight,
                confidence_threshold=tau,
                quality=float(np.mean(chosen_quality)),
                cost=float(np.mean([costs[decision.expert] for decision in decisions])),
                fallback_share=float(np.mean([decision.uncertain for decision in decisions])),
            )
        )
    return points


def budget_sweep(
    router: StaticRouter, result: MappingResult, costs: dict[str, float], shares: dict[str, float]
) -> list[Point]:
    """The CoE curve: re-solve the assignment at every budget from the general expert alone to all.

    Stage 1 is unchanged (the same categories and the same uncertain requests, which go to the
    general expert); only which experts are deployed, and so who serves each category, moves.
    """
    from services.router.assignment import solve_assignment

    decisions = router.decide([router.prepare(example.messages) for example in result.examples])
    general = router.general_expert
    others = sorted((cost, expert) for expert, cost in costs.items() if expert != general)
    budgets = [costs[general] + sum(cost for cost, _ in others[:count]) for count in range(len(others) + 1)]
    points = []
    for budget in budgets:
        plan = solve_assignment(result.scores, shares, costs, budget * (1 + 1e-9), general)
        chosen = [general if decision.uncertain else plan.expert_for[decision.category] for decision in decisions]
        points.append(
            Point(
                label=f"≤{budget:.3g}: {len(plan.deployed)} deployed",
                cost_weight=None,
                confidence_threshold=None,
                quality=float(np.mean([result.quality[expert][index] for index, expert in enumerate(chosen)])),
                cost=float(np.mean([costs[expert] for expert in chosen])),
                fallback_share=float(np.mean([decision.uncertain for decision in decisions])),
                budget=float(budget),
            )
        )
    return points


def references(result: MappingResult, costs: dict[str, float]) -> list[Point]:
    """Each expert alone, and the oracle that knows every answer's quality."""
    singles = [
        Point(expert, None, None, float(np.mean(values)), costs[expert], 0.0) for expert, values in sorted(result.quality.items())
    ]
    experts = sorted(result.quality)
    best = [max(experts, key=lambda expert: result.quality[expert][index]) for index in range(len(result.examples))]
    oracle = Point(
        "oracle",
        None,
        None,
        float(np.mean([result.quality[expert][index] for index, expert in enumerate(best)])),
        float(np.mean([costs[expert] for expert in best])),
        0.0,
    )
    return [*singles, oracle]


def default_lambdas(router: StaticRouter) -> list[float]:
    crossings = router.table.crossings()
    top = max(crossings) * 1.5 if crossings else 1.0
    return [float(value) for value in np.linspace(0.0, top, 9)]
