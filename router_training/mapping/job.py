"""``coe train mapping``: score every expert per category and write the table into a new router.

For each category, up to ``prompts_per_category`` calibration prompts are answered by every
expert (greedy, bounded length) and scored by the reward model. ``s(category, expert)`` is the
mean reward; the win rate against the general expert is reported beside it. The CoE assignment
(``scipy.optimize.milp``) then picks which experts to deploy under the budget and which serves
each category. The table goes into a new version of the current router (same head, same
embedder), so serving picks it up through the store's pointer.
"""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from router_training.mapping.generate import Task, generate
from router_training.router.data import DATA_DIR, Example, read_examples
from services.config import AppConfig
from services.experts.costs import resolve_costs
from services.rewards.model import transcript
from services.router.artifact import RouterArtifact, write_router_artifact
from services.router.assignment import Assignment, solve_assignment
from services.router.store import RouterStore

logger = logging.getLogger(__name__)


@dataclass
class MappingResult:
    scores: dict[str, dict[str, float]]
    win_rates: dict[str, dict[str, float]]
    assignment: Assignment
    rewards: dict[str, list[float]]  # expert -> reward of its answer to each of ``examples``
    examples: list[Example] = field(default_factory=list)
    answers: dict[str, list[str]] = field(default_factory=dict)  # expert -> answers in example order
    artifact: RouterArtifact | None = None


def sample_prompts(examples: list[Example], categories: tuple[str, ...], per_category: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    chosen: list[Example] = []
    for category in categories:
        pool = [example for example in examples if example.category == category]
        chosen += rng.sample(pool, min(per_category, len(pool)))
    return chosen


def score_experts(
    config: AppConfig,
    reward_model: Any,
    examples: list[Example],
    *,
    max_tokens: int,
    use_ray: bool = False,
    processes: int = 1,
) -> MappingResult:
    """Answers from every expert, their rewards, the score table and the win rates."""
    experts = [expert.name for expert in config.experts]
    tasks = [Task(expert=expert, messages=example.messages) for expert in experts for example in examples]
    answers = generate(config, tasks, max_tokens, use_ray=use_ray, processes=processes)
    prompts = [transcript(example.messages) for example in examples]
    by_expert: dict[str, list[str]] = {expert: answers[i * len(examples) : (i + 1) * len(examples)] for i, expert in enumerate(experts)}
    labels = [example.category for example in examples]
    rewards = {expert: [float(score.reward) for score in reward_model.score(prompts, by_expert[expert], labels)] for expert in experts}
    general = config.general_expert

    def of(expert: str, category: str) -> np.ndarray:
        return np.array([reward for reward, label in zip(rewards[expert], labels) if label == category])

    categories = sorted(set(labels))
    scores = {category: {expert: float(of(expert, category).mean()) for expert in experts} for category in categories}
    win_rates = {
        category: {
            expert: float(np.mean(np.sign(of(expert, category) - of(general, category)) * 0.5 + 0.5)) for expert in experts
        }
        for category in categories
    }
    return MappingResult(
        scores=scores,
        win_rates=win_rates,
        assignment=Assignment(expert_for={}, deployed=frozenset()),
        rewards=rewards,
        examples=examples,
        answers=by_expert,
    )


def assign(config: AppConfig, result: MappingResult, shares: dict[str, float]) -> Assignment:
    """The CoE program: traffic-weighted score, under the budget (none: every expert may deploy)."""
    costs = resolve_costs(config)
    budget = config.training.mapping.budget or (config.router.budget if config.router else None) or sum(costs.values())
    return solve_assignment(result.scores, shares, costs, budget, config.general_expert)


def run_mapping(
    config: AppConfig,
    reward_model: Any,
    *,
    data_dir: Path = DATA_DIR,
    use_ray: bool = False,
    activate: bool = True,
    base: RouterArtifact | None = None,
) -> MappingResult:
    """Score, assign, and publish the table as a new version of ``base`` (default: the current router)."""
    assert config.router is not None
    store = RouterStore(Path(config.router.store))
    base = base or store.load_current()
    options = config.training.mapping
    calibration = read_examples(data_dir / "calibration.jsonl", config.router.categories)
    examples = sample_prompts(calibration, config.router.categories, options.prompts_per_category)
    result = score_experts(
        config, reward_model, examples, max_tokens=options.max_tokens, use_ray=use_ray, processes=options.local_processes
    )
    result.assignment = assign(config, result, base.manifest.category_shares)
    metrics = {
        **base.manifest.metrics,
        "mapping": {
            "win_rate_vs_general": result.win_rates,
            "assignment": result.assignment.expert_for,
            "deployed": sorted(result.assignment.deployed),
            "prompts_per_category": options.prompts_per_category,
            "max_tokens": options.max_tokens,
            "reward_model": getattr(reward_model, "version", None),
        },
    }
    manifest = base.manifest.model_copy(update={"scores": result.scores, "metrics": metrics, "parent": base.version})
    result.artifact = write_router_artifact(store.root, manifest, base.weight, base.bias, embedder_dir=base.bundled_embedder)
    if activate:
        store.use(result.artifact.version)
    return result


def format_table(result: MappingResult, general: str) -> str:
    experts = sorted({expert for row in result.scores.values() for expert in row})
    lines = [f"{'category':<12}" + "".join(f"{expert:>16}" for expert in experts) + f"{'→ assigned':>18}"]
    for category, row in result.scores.items():
        cells = "".join(f"{row[expert]:>9.3f} ({result.win_rates[category][expert]:.2f})" for expert in experts)
        lines.append(f"{category:<12}{cells}{result.assignment.expert_for.get(category, '?'):>18}")
    lines.append(f"cells: mean reward (win rate against {general}); deployed: {', '.join(sorted(result.assignment.deployed))}")
    return "\n".join(lines)
