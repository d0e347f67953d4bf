"""The CoE budget formulation: which experts to deploy and which serves each category.

Maximise ``Σ_c w_c Σ_m z[c,m]·u(c,m)`` with ``u(c,m) = s(c,m) − λ·cost_norm(m)`` subject to one
expert per category (``Σ_m z[c,m] = 1``), only deployed experts (``z[c,m] ≤ d_m``), the general
expert always deployed (it takes the uncertain requests), and ``Σ_m d_m·cost_m ≤ budget``; among
equally good plans the cheapest is taken, so no expert is deployed that serves nothing.
Solved exactly with SciPy's MILP solver (HiGHS).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from services.errors import InvalidRequestError


@dataclass(frozen=True)
class Assignment:
    expert_for: dict[str, str]  # category -> expert
    deployed: frozenset[str]


def solve_assignment(
    utility: dict[str, dict[str, float]],
    weights: dict[str, float],
    costs: dict[str, float],
    budget: float,
    general_expert: str,
) -> Assignment:
    from scipy.optimize import Bounds, LinearConstraint, milp

    categories = sorted(utility)
    experts = sorted(costs)
    n_c, n_m = len(categories), len(experts)
    n_z = n_c * n_m  # z[c, m] flattened row-major, then d[m]
    objective = np.zeros(n_z + n_m)
    for i, category in enumerate(categories):
        for j, expert in enumerate(experts):
            objective[i * n_m + j] = -weights.get(category, 0.0) * utility[category].get(expert, -1e6)
    # A vanishing cost per deployed expert: among equally good plans, deploy nothing unused.
    objective[n_z:] = [1e-6 * costs[expert] for expert in experts]
    rows, lower, upper = [], [], []
    for i in range(n_c):  # exactly one expert per category
        row = np.zeros(n_z + n_m)
        row[i * n_m : (i + 1) * n_m] = 1
        rows.append(row), lower.append(1), upper.append(1)
    for i in range(n_c):  # z[c, m] <= d[m]
        for j in range(n_m):
            row = np.zeros(n_z + n_m)
            row[i * n_m + j], row[n_z + j] = 1, -1
            rows.append(row), lower.append(-np.inf), upper.append(0)
    budget_row = np.zeros(n_z + n_m)
    budget_row[n_z:] = [costs[expert] for expert in experts]
    rows.append(budget_row), lower.append(-np.inf), upper.append(budget)
    low_bounds = np.zeros(n_z + n_m)
    low_bounds[n_z + experts.index(general_expert)] = 1  # the fallback must be deployed
    result = milp(
        objective,
        constraints=LinearConstraint(np.array(rows), lower, upper),
        integrality=np.ones(n_z + n_m),
        bounds=Bounds(low_bounds, np.ones(n_z + n_m)),
    )
    if not result.success:
        raise InvalidRequestError(
            f"no set of experts fits the budget {budget} with the general expert '{general_expert}' "
            f"(cost {costs[general_expert]}): {result.message}"
        )
    chosen = np.round(result.x).astype(int)
    expert_for = {category: experts[int(np.argmax(chosen[i * n_m : (i + 1) * n_m]))] for i, category in enumerate(categories)}
    deployed = frozenset(expert for j, expert in enumerate(experts) if chosen[n_z + j])
    return Assignment(expert_for=expert_for, deployed=deployed)
