"""Stage 2: ranking by score minus weighted cost, and the CoE budget assignment."""

from __future__ import annotations

import pytest

from services.errors import InvalidRequestError
from services.router.stages import ExpertTable

SCORES = {
    "math": {"big": 0.9, "small": 0.6, "math-lora": 0.8},
    "writing": {"big": 0.9, "small": 0.7, "math-lora": 0.2},
}
COSTS = {"big": 7.0, "small": 0.5, "math-lora": 0.5}
SHARES = {"math": 0.5, "writing": 0.5}


def experts(ranked) -> list[str]:
    return [item.expert for item in ranked]


def test_without_cost_weight_the_best_score_wins() -> None:
    table = ExpertTable(SCORES, COSTS, SHARES, general_expert="big")
    assert experts(table.rank("math", 0.0)) == ["big", "math-lora", "small"]


def test_cost_weight_moves_traffic_to_cheaper_experts() -> None:
    table = ExpertTable(SCORES, COSTS, SHARES, general_expert="big")
    assert experts(table.rank("math", 0.2))[0] == "math-lora"  # 0.9-0.2 < 0.8-0.2*0.5/7
    assert experts(table.rank("writing", 0.5))[0] == "small"
    assert all(point > 0 for point in table.crossings())


def test_experts_missing_from_the_running_config_are_not_candidates() -> None:
    table = ExpertTable(SCORES, {"big": 7.0, "small": 0.5}, SHARES, general_expert="big")
    assert experts(table.rank("math", 0.0)) == ["big", "small"]


def test_budget_picks_a_deployable_set_that_keeps_the_general_expert() -> None:
    table = ExpertTable(SCORES, COSTS, SHARES, general_expert="small", budget=1.0)
    ranked = experts(table.rank("math", 0.0))
    assert "big" not in ranked  # 7.0 does not fit the budget
    assert ranked[0] == "math-lora" and "small" in ranked


def test_an_impossible_budget_is_reported() -> None:
    table = ExpertTable(SCORES, COSTS, SHARES, general_expert="big", budget=1.0)
    with pytest.raises(InvalidRequestError, match="no set of experts fits the budget"):
        table.rank("math", 0.0)


def test_milp_finds_the_known_optimum_of_a_constructed_table() -> None:
    """Three categories, four experts. Unlimited, each category takes its best expert; with a
    budget of 3 the best set is {mid, small} (value 0.5·0.8 + 0.3·0.7 + 0.2·0.6 = 0.73), which
    beats {big, small} (0.5·0.9 + 0.3·0.4 + 0.2·0.6 = 0.69) and {big} alone."""
    from services.router.assignment import solve_assignment

    utility = {
        "a": {"big": 0.9, "mid": 0.8, "small": 0.3, "tiny": 0.1},
        "b": {"big": 0.4, "mid": 0.7, "small": 0.4, "tiny": 0.2},
        "c": {"big": 0.5, "mid": 0.5, "small": 0.6, "tiny": 0.55},
    }
    weights = {"a": 0.5, "b": 0.3, "c": 0.2}
    costs = {"big": 2.5, "mid": 2.0, "small": 0.5, "tiny": 0.4}
    free = solve_assignment(utility, weights, costs, budget=100.0, general_expert="small")
    assert free.expert_for == {"a": "big", "b": "mid", "c": "small"}
    tight = solve_assignment(utility, weights, costs, budget=3.0, general_expert="small")
    assert tight.expert_for == {"a": "mid", "b": "mid", "c": "small"}
    assert tight.deployed == frozenset({"mid", "small"})
