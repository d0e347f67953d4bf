"""``coe train mapping``: score every expert per category, with evidence, and publish the table.

For each category ``prompts_per_category`` prompts are answered by every expert (greedy, bounded
length, all in one batched generation run):

- in the categories with checks (math, coding, extraction) the prompts are the project's
  verifiable tasks (``scoring`` split) and an answer's quality is its check's result;
- elsewhere they come from the router's calibration and training prompts, and the quality is
  the reward model's preference for the answer over the general expert's.

The score table comes with bootstrap intervals and is conservative (``evidence``): a specialist
wins a category only when it beats the general expert by more than the uncertainty. The CoE
assignment (``scipy.optimize.milp``) then picks which experts to deploy under the budget and
which serves each category. Where both a check and the reward model have judged the same
answers, the report says how often the reward model ranked a right answer above a wrong one.

The table goes into a new version of the router (same head, same embedder). The held-out
verifiable tasks, answered in the same generation run, then serve the end-to-end check
(``endtoend``): a version that routes them worse than the current one is published but not
made current unless forced.
"""

from __future__ import annotations

import logging
import math
import random
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from router_training.mapping.endtoend import EndToEnd, end_to_end, format_end_to_end
from router_training.mapping.evidence import CategoryEvidence, category_evidence, conservative_table
from router_training.mapping.generate import Task, generate
from router_training.router.data import DATA_DIR, Example, read_examples
from router_training.verifiable.tasks import DATA_DIR as TASKS_DIR
from router_training.verifiable.tasks import VerifiableTask, read_tasks, score
from services.config import AppConfig
from services.experts.costs import resolve_costs
from services.rewards.model import transcript
from services.router.artifact import RouterArtifact, derive_router_artifact
from services.router.assignment import Assignment, solve_assignment
from services.router.store import RouterStore

logger = logging.getLogger(__name__)


@dataclass
class MappingResult:
    scores: dict[str, dict[str, float]]  # the conservative table that is published
    evidence: dict[str, CategoryEvidence]
    assignment: Assignment
    quality: dict[str, list[float]]  # expert -> quality in [0, 1] of its answer to each of ``examples``
    rewards: dict[str, list[float]]  # expert -> the reward model's reward for the same answers
    examples: list[Example] = field(default_factory=list)
    answers: dict[str, list[str]] = field(default_factory=dict)  # expert -> answers in example order
    reward_agreement: dict[str, dict[str, float | None]] = field(default_factory=dict)
    end_to_end: EndToEnd | None = None
    artifact: RouterArtifact | None = None
    activated: bool = False
    activation: str = ""  # why the version was, or was not, made current


def sample_prompts(examples: list[Example], categories: tuple[str, ...], per_category: int, seed: int = 0) -> list[Example]:
    rng = random.Random(seed)
    chosen: list[Example] = []
    for category in categories:
        pool = [example for example in examples if example.category == category]
        chosen += rng.sample(pool, min(per_category, len(pool)))
    return chosen


def as_example(task: VerifiableTask) -> Example:
    return Example(messages=task.messages, category=task.category, raw={"id": task.id})


def scoring_prompts(
    config: AppConfig, data_dir: Path, tasks_dir: Path, per_category: int
) -> tuple[list[Example], list[VerifiableTask | None]]:
    """The prompts every expert answers, each with its verifiable task where its category has checks."""
    assert config.router is not None
    categories = config.router.categories
    pool = read_examples(data_dir / "calibration.jsonl", categories)
    if (data_dir / "train.jsonl").is_file():
        pool += read_examples(data_dir / "train.jsonl", categories)  # the classifier's data; the experts never saw it
    return checked_and_judged(read_tasks(tasks_dir, "scoring"), pool, categories, per_category)


def checked_and_judged(
    available: list[VerifiableTask], pool: list[Example], categories: tuple[str, ...], per_category: int
) -> tuple[list[Example], list[VerifiableTask | None]]:
    """``per_category`` prompts per category: verifiable tasks where the category has checks, prompts
    of ``pool`` (for the reward model to judge) elsewhere; each with its task or None."""
    checked = {task.category for task in available}
    tasks = sample_tasks(available, per_category)
    judged = sample_prompts(pool, tuple(c for c in categories if c not in checked), per_category)
    return [as_example(task) for task in tasks] + judged, [*tasks, *([None] * len(judged))]


def sample_tasks(tasks: list[VerifiableTask], per_category: int, seed: int = 0) -> list[VerifiableTask]:
    rng = random.Random(seed)
    chosen: list[VerifiableTask] = []
    for category in sorted({task.category for task in tasks}):
        pool = [task for task in tasks if task.category == category]
        chosen += sorted(rng.sample(pool, min(per_category, len(pool))), key=lambda task: task.id)
    return chosen


def check_answers(tasks: list[VerifiableTask], answers: list[str], workers: int = 2) -> list[float]:
    """Each answer's check result (code runs in the sandbox, ``workers`` at a time)."""
    with ThreadPoolExecutor(max_workers=workers) as pool:
        return list(tqdm(pool.map(score, tasks, answers), total=len(tasks), desc="checking answers", unit="answer"))


def preference(reward: float, general_reward: float) -> float:
    """Bradley–Terry: the reward model's probability that this answer beats the general expert's."""
    return 0.5 * (1.0 + math.tanh((reward - general_reward) / 2))  # σ(d), without overflow for large |d|


def agreement(checked: list[float], rewards: list[float]) -> tuple[int, int]:
    """(pairs, agreeing): answers to one prompt with different check results, ordered alike by the reward."""
    pairs = agreeing = 0
    for i in range(len(checked)):
        for j in range(len(checked)):
            if checked[i] > checked[j]:
                pairs += 1
                agreeing += rewards[i] > rewards[j]
    return pairs, agreeing


def score_experts(
    config: AppConfig,
    reward_model: Any,
    examples: list[Example],
    tasks: list[VerifiableTask | None],
    *,
    max_tokens: int,
    checked_max_tokens: int,
    heldout: Sequence[VerifiableTask] = (),
    use_ray: bool = False,
    processes: int = 1,
) -> tuple[MappingResult, dict[str, list[float]]]:
    """Answers, checks, rewards, evidence; and the check results on ``heldout`` (answered in the same run)."""
    experts = [expert.name for expert in config.experts]
    general = config.general_expert
    prompts = [*((example.messages, task) for example, task in zip(examples, tasks)), *((task.messages, task) for task in heldout)]
    jobs = [
        Task(expert=expert, messages=messages, max_tokens=checked_max_tokens if task is not None else max_tokens)
        for expert in experts
        for messages, task in prompts
    ]
    texts = generate(config, jobs, max_tokens, use_ray=use_ray, processes=processes, batch_size=config.training.mapping.batch_size)
    per_expert = {expert: texts[i * len(prompts) : (i + 1) * len(prompts)] for i, expert in enumerate(experts)}
    by_expert = {expert: answers[: len(examples)] for expert, answers in per_expert.items()}

    checked_rows = [index for index, task in enumerate(tasks) if task is not None]
    all_tasks = [tasks[index] for index in checked_rows] + list(heldout)
    flat = [(expert, task, answer) for expert in experts
            for task, answer in zip(all_tasks, [by_expert[expert][i] for i in checked_rows] + per_expert[expert][len(examples):])]
    results = check_answers([task for _, task, _ in flat], [answer for _, _, answer in flat])  # type: ignore[misc]
    width = len(all_tasks)
    checks = {expert: results[i * width : (i + 1) * width] for i, expert in enumerate(experts)}

    labels = [example.category for example in examples]
    transcripts = [transcript(example.messages) for example in examples]
    rewards = {
        expert: [float(item.reward) for item in reward_model.score(transcripts, by_expert[expert], labels)] for expert in experts
    }
    quality: dict[str, list[float]] = {expert: [0.0] * len(examples) for expert in experts}
    for expert in experts:
        for position, index in enumerate(checked_rows):
            quality[expert][index] = checks[expert][position]
        for index, task in enumerate(tasks):
            if task is None:
                quality[expert][index] = preference(rewards[expert][index], rewards[general][index])

    evidence: dict[str, CategoryEvidence] = {}
    reward_agreement: dict[str, dict[str, float | None]] = {}
    for category in dict.fromkeys(labels):
        rows = [index for index, label in enumerate(labels) if label == category]
        source = "check" if tasks[rows[0]] is not None else "reward"
        evidence[category] = category_evidence({expert: [quality[expert][i] for i in rows] for expert in experts}, general, source)
        if source == "check":
            pairs = agreeing = 0
            for index in rows:
                found = agreement([quality[expert][index] for expert in experts], [rewards[expert][index] for expert in experts])
                pairs, agreeing = pairs + found[0], agreeing + found[1]
            reward_agreement[category] = {"pairs": pairs, "agreement": round(agreeing / pairs, 4) if pairs else None}
    heldout_checks = {expert: checks[expert][len(checked_rows):] for expert in experts}
    result = MappingResult(
        scores=conservative_table(evidence, general),
        evidence=evidence,
        assignment=Assignment(expert_for={}, deployed=frozenset()),
        quality=quality,
        rewards=rewards,
        examples=examples,
        answers=by_expert,
        reward_agreement=reward_agreement,
    )
    return result, heldout_checks


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
    tasks_dir: Path = TASKS_DIR,
    use_ray: bool = False,
    activate: bool = True,
    force_activate: bool = False,
    base: RouterArtifact | None = None,
    make_current: bool = True,
) -> MappingResult:
    """Score, assign, publish the table as a new version of ``base`` (default: the current router),
    check it end to end against the current one, and decide whether it may become current: if asked,
    and if it keeps up (or if forced). ``make_current=False`` leaves moving the pointer to the caller
    (the pipeline does it once its report is written), which follows ``result.activated``."""
    assert config.router is not None
    store = RouterStore.from_config(config)
    current = store.load_current() if store.current_version() else None
    base = base or store.load_current()
    options = config.training.mapping
    examples, tasks = scoring_prompts(config, data_dir, tasks_dir, options.prompts_per_category)
    heldout = sample_tasks(read_tasks(tasks_dir, "heldout"), options.heldout_per_category)
    result, heldout_checks = score_experts(
        config, reward_model, examples, tasks, max_tokens=options.max_tokens, checked_max_tokens=options.checked_max_tokens,
        heldout=heldout, use_ray=use_ray, processes=options.local_processes,
    )
    return publish_mapping(
        config, store, base, result, reward_model_version=getattr(reward_model, "version", None), current=current,
        heldout=heldout, heldout_checks=heldout_checks, activate=activate, force_activate=force_activate,
        make_current=make_current,
    )


def publish_mapping(
    config: AppConfig,
    store: RouterStore,
    base: RouterArtifact,
    result: MappingResult,
    *,
    reward_model_version: str | None,
    current: RouterArtifact | None,
    heldout: Sequence[VerifiableTask],
    heldout_checks: dict[str, list[float]],
    activate: bool,
    force_activate: bool,
    make_current: bool = True,
) -> MappingResult:
    """Assign, write the new version, run the end-to-end check and apply the activation guard."""
    options = config.training.mapping
    result.assignment = assign(config, result, base.manifest.category_shares)
    metrics = {
        **base.manifest.metrics,
        "mapping": {
            "evidence": {category: item.as_dict() for category, item in result.evidence.items()},
            "reward_agreement": result.reward_agreement,
            "assignment": result.assignment.expert_for,
            "deployed": sorted(result.assignment.deployed),
            "prompts_per_category": options.prompts_per_category,
            "max_tokens": {"judged": options.max_tokens, "checked": options.checked_max_tokens},
            "reward_model": reward_model_version,
        },
    }
    result.artifact = derive_router_artifact(
        store.root, base, key=store.key, scores=result.scores, metrics=metrics, parent=base.version
    )
    if heldout:
        result.end_to_end = end_to_end(config, heldout, heldout_checks, result.artifact, current)
    decide_activation(result, activate=activate, force=force_activate)
    if result.activated and make_current:
        store.use(result.artifact.version)
    return result


def decide_activation(result: MappingResult, *, activate: bool, force: bool) -> None:
    """Make the version current only if asked, and only if it routes no worse than the current one (or forced)."""
    worse = result.end_to_end is not None and result.end_to_end.worse_than_current
    if not activate:
        result.activated, result.activation = False, "published without activation (--no-activate)"
    elif worse and not force:
        assert result.end_to_end is not None
        result.activated = False
        result.activation = f"published but not made current: {result.end_to_end.verdict()}; --force-activate overrides"
    else:
        result.activated = True
        result.activation = "made current" + (f" despite the end-to-end check (--force-activate): {result.end_to_end.verdict()}" if worse and result.end_to_end else "")


def format_table(result: MappingResult, general: str) -> str:
    experts = sorted({expert for row in result.scores.values() for expert in row})
    lines = [f"{'category':<12}{'by':<8}" + "".join(f"{expert:>24}" for expert in experts) + f"{'→ assigned':>18}"]
    for category, item in result.evidence.items():
        cells = "".join(
            f"{item.score[expert].mean:>8.3f} [{item.score[expert].low:.2f},{item.score[expert].high:.2f}]" for expert in experts
        )
        lines.append(f"{category:<12}{item.source:<8}{cells}{result.assignment.expert_for.get(category, '?'):>18}")
    lines.append(
        f"cells: mean quality [95% bootstrap interval] over {max(item.prompts for item in result.evidence.values())} prompts per category; "
        f"'check': share of answers passing the category's check; 'reward': the reward model's preference over {general} "
        f"(0.5 = as good). A specialist is assigned only when its advantage over {general} is beyond its interval. "
        f"Deployed: {', '.join(sorted(result.assignment.deployed))}"
    )
    for category, row in result.reward_agreement.items():
        if row["agreement"] is None:
            lines.append(f"reward model vs the {category} check: no prompt had both a right and a wrong answer")
        else:
            lines.append(f"reward model agrees with the {category} check on {row['agreement']:.0%} of {row['pairs']} right/wrong answer pairs")
    if result.end_to_end is not None:
        lines.append(format_end_to_end(result.end_to_end))
    if result.activation:
        lines.append(f"router {result.artifact.version if result.artifact else '?'}: {result.activation}")
    return "\n".join(lines)

