"""The end-to-end check: does the new router route held-out verifiable prompts at least as well?

Every expert has answered the held-out tasks (never used for scoring) and every answer has been
checked. A router's *routed accuracy* is the mean check result of the answers it would pick,
one prompt at a time, through the serving code (``StaticRouter``). The new version is compared
with each expert alone and with the current version, prompt by prompt (a paired bootstrap
interval of the difference). It is **worse** when that whole interval lies below zero; a worse
version is published but not made current, unless the caller forces it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from router_training.mapping.evidence import Interval, bootstrap_interval
from router_training.verifiable.tasks import VerifiableTask
from services.config import AppConfig
from services.router.artifact import RouterArtifact
from services.router.loader import RouterFactory


@dataclass
class EndToEnd:
    categories: tuple[str, ...]
    prompts: int
    experts: dict[str, Interval]  # each expert alone
    new: Interval
    new_version: str
    new_choices: dict[str, int]  # expert -> prompts routed to it
    current: Interval | None = None
    current_version: str | None = None
    new_minus_current: Interval | None = None
    per_category: dict[str, dict[str, float]] = field(default_factory=dict)

    @property
    def worse_than_current(self) -> bool:
        return self.new_minus_current is not None and self.new_minus_current.high < 0

    @property
    def best_expert(self) -> str:
        return max(sorted(self.experts), key=lambda name: self.experts[name].mean)

    def verdict(self) -> str:
        if self.current is None:
            return "no current router to compare with"
        if self.worse_than_current:
            assert self.new_minus_current is not None
            return (
                f"the new version routes held-out verifiable prompts worse than the current {self.current_version}: "
                f"accuracy {self.new.mean:.3f} against {self.current.mean:.3f}, difference "
                f"{self.new_minus_current.mean:+.3f} (95% interval {self.new_minus_current.low:+.3f} to {self.new_minus_current.high:+.3f})"
            )
        return f"routes held-out verifiable prompts as well as the current {self.current_version} or better (within the interval)"

    def as_dict(self) -> dict[str, Any]:
        return {
            "categories": list(self.categories),
            "prompts": self.prompts,
            "experts": {name: interval.as_dict() for name, interval in self.experts.items()},
            "best_expert": self.best_expert,
            "new": {"version": self.new_version, **self.new.as_dict(), "routed_to": self.new_choices},
            "current": None if self.current is None else {"version": self.current_version, **self.current.as_dict()},
            "new_minus_current": None if self.new_minus_current is None else self.new_minus_current.as_dict(),
            "per_category": self.per_category,
            "worse_than_current": self.worse_than_current,
            "verdict": self.verdict(),
        }


def routed_choices(factory: RouterFactory, artifact: RouterArtifact, tasks: Sequence[VerifiableTask]) -> list[str]:
    """The expert ``artifact`` sends each task to, decided by the serving code."""
    router = factory.build(artifact)
    return [decision.expert for decision in router.decide([router.prepare(task.messages) for task in tasks])]


def end_to_end(
    config: AppConfig,
    tasks: Sequence[VerifiableTask],
    quality: dict[str, list[float]],  # expert -> check result per task
    new: RouterArtifact,
    current: RouterArtifact | None,
) -> EndToEnd:
    def routed(choices: list[str]) -> np.ndarray:
        return np.array([quality[expert][index] if expert in quality else 0.0 for index, expert in enumerate(choices)])

    factory = RouterFactory(config)  # one embedder for both versions when they share it
    new_choices = routed_choices(factory, new, tasks)
    new_quality = routed(new_choices)
    result = EndToEnd(
        categories=tuple(sorted({task.category for task in tasks})),
        prompts=len(tasks),
        experts={expert: bootstrap_interval(values, bounds=(0.0, 1.0)) for expert, values in sorted(quality.items())},
        new=bootstrap_interval(new_quality, bounds=(0.0, 1.0)),
        new_version=new.version,
        new_choices={expert: new_choices.count(expert) for expert in sorted(set(new_choices))},
    )
    current_quality = None
    if current is not None:
        current_quality = routed(routed_choices(factory, current, tasks))
        result.current = bootstrap_interval(current_quality, bounds=(0.0, 1.0))
        result.current_version = current.version
        result.new_minus_current = bootstrap_interval(new_quality - current_quality, bounds=(-1.0, 1.0))
    for category in result.categories:
        rows = [index for index, task in enumerate(tasks) if task.category == category]
        cells = {expert: round(float(np.mean([values[i] for i in rows])), 4) for expert, values in sorted(quality.items())}
        cells["routed (new)"] = round(float(new_quality[rows].mean()), 4)
        if current_quality is not None:
            cells["routed (current)"] = round(float(current_quality[rows].mean()), 4)
        result.per_category[category] = cells
    return result


def format_end_to_end(check: EndToEnd) -> str:
    lines = [f"end-to-end on {check.prompts} held-out verifiable prompts ({', '.join(check.categories)}): routed accuracy [95% interval]"]
    rows = [(f"expert {name}", interval) for name, interval in check.experts.items()]
    rows.append((f"new router {check.new_version}", check.new))
    if check.current is not None:
        rows.append((f"current router {check.current_version}", check.current))
    for label, interval in rows:
        lines.append(f"  {label:<36} {interval.mean:.3f} [{interval.low:.3f}, {interval.high:.3f}]")
    lines.append(f"  verdict: {check.verdict()}")
    return "\n".join(lines)
