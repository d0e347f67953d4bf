"""The three DMoERM training phases, each fitted on ``fit`` and early-stopped on ``calibration``.

- :func:`train_value_head` (phases 1 and 2): a value head on the pooled encoder state, with
  one adapter (or none) active, trained with the pairwise loss ``−log σ(r_c − r_r)``. What
  else is trainable (the whole encoder in phase 1, one LoRA adapter in phase 2) is given by
  the caller as parameter groups. The calibration loss is measured before training and after
  every epoch; the best state is restored at the end, so a phase can never make the model
  worse on calibration than it started.
- :func:`train_aggregator` (phase 3): an aggregator on precomputed capability states
  ``(N, K, H)``, adapters frozen, same loss, same early stopping (with patience).

Both show a progress bar (steps or epochs, the loss, time left) and stop at a
:class:`Deadline` (``--max-minutes``): the best calibration state so far is restored, as at a
normal end, and the report says the phase was cut short.
"""

from __future__ import annotations

import logging
import math
import random
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from router_training.reward.data import PreferencePair
from services.rewards.network import RewardNetwork, encode_pairs, pooled_states

logger = logging.getLogger(__name__)

LENGTH_WINDOW_BATCHES = 50  # batches whose pairs are sorted by length together (see length_grouped_batches)


def pairwise_loss(chosen: torch.Tensor, rejected: torch.Tensor) -> torch.Tensor:
    """Mean of ``−log σ(r_c − r_r)`` over pairs: ``(B,), (B,) -> ()``."""
    return -F.logsigmoid(chosen - rejected).mean()


def pairwise_accuracy(chosen: torch.Tensor, rejected: torch.Tensor) -> float:
    """Share of pairs ranked like the label; a tie counts as half."""
    if chosen.numel() == 0:
        return float("nan")
    return float(((chosen > rejected).float() + 0.5 * (chosen == rejected).float()).mean())


class Deadline:
    """When training must stop (``--max-minutes``); ``None`` never expires."""

    def __init__(self, minutes: float | None) -> None:
        self.minutes = minutes
        self._ends = None if minutes is None else time.monotonic() + minutes * 60

    def expired(self) -> bool:
        return self._ends is not None and time.monotonic() >= self._ends


NO_DEADLINE = Deadline(None)


@dataclass
class PhaseReport:
    """How one head or aggregator training went; goes into the manifest's metrics."""

    steps: int = 0
    seconds: float = 0.0
    best_epoch: int = 0  # 0: the starting point was best on calibration
    calibration_loss: float = float("nan")
    calibration_accuracy: float = float("nan")
    history: list[dict[str, float]] = field(default_factory=list)
    planned_steps: int = 0
    stopped_by_deadline: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "steps": self.steps,
            "planned_steps": self.planned_steps,
            "stopped_by_deadline": self.stopped_by_deadline,
            "seconds": round(self.seconds, 2),
            "best_epoch": self.best_epoch,
            "calibration_loss": _round(self.calibration_loss),
            "calibration_accuracy": _round(self.calibration_accuracy),
        }


def _round(value: float) -> float | None:
    return None if math.isnan(value) else round(value, 4)


def _linear_schedule(optimizer: torch.optim.Optimizer, total_steps: int) -> torch.optim.lr_scheduler.LambdaLR:
    """10 % linear warm-up, then linear decay to zero."""
    warmup = max(1, total_steps // 10)

    def factor(step: int) -> float:
        if step < warmup:
            return (step + 1) / warmup
        return max(0.0, (total_steps - step) / max(1, total_steps - warmup))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, factor)


def head_rewards(
    network: RewardNetwork, tokenizer: Any, pairs: Sequence[PreferencePair], adapter: str | None, head: nn.Linear,
    batch_size: int,
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(r_chosen, r_rejected)``, each ``(N,)``, of one head with one adapter (no gradients)."""
    prompts = [pair.prompt for pair in pairs]
    states = pooled_states(
        network, tokenizer, prompts * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs], [adapter],
        batch_size=batch_size,
    )[:, 0]  # (2N, H)
    with torch.no_grad():
        rewards = head(states).squeeze(-1)  # (2N,)
    return rewards[: len(pairs)], rewards[len(pairs) :]


def length_grouped_batches(
    pairs: Sequence[PreferencePair], batch_size: int, rng: random.Random, grouped: bool = True
) -> list[list[PreferencePair]]:
    """One epoch of batches, each of pairs of similar length, in random order (``grouped=False``:
    batches of random pairs).

    A batch pads to its longest sequence, so random batches of real transcripts, a few long
    among many short, spend most of their work on padding. The pairs are shuffled, sorted by
    length within windows of ``LENGTH_WINDOW_BATCHES`` batches (so batch contents still vary
    between epochs), cut into batches, and the batches shuffled.
    """
    order = list(pairs)
    rng.shuffle(order)
    window = batch_size * LENGTH_WINDOW_BATCHES
    batches: list[list[PreferencePair]] = []
    for start in range(0, len(order), window):
        chunk = order[start : start + window]
        if grouped:
            chunk.sort(key=_pair_length)
        batches += [chunk[index : index + batch_size] for index in range(0, len(chunk), batch_size)]
    rng.shuffle(batches)
    return batches


def batches_per_epoch(pairs: int, batch_size: int) -> int:
    """How many batches :func:`length_grouped_batches` makes of ``pairs`` pairs (one short batch per window)."""
    window = batch_size * LENGTH_WINDOW_BATCHES
    return sum(math.ceil(min(window, pairs - start) / batch_size) for start in range(0, pairs, window))


def _pair_length(pair: PreferencePair) -> int:
    return len(pair.prompt) + max(len(pair.chosen), len(pair.rejected))


def _evaluate(network: RewardNetwork, tokenizer: Any, pairs: Sequence[PreferencePair], adapter: str | None,
              head: nn.Linear, batch_size: int) -> tuple[float, float]:
    if not pairs:
        return float("nan"), float("nan")
    chosen, rejected = head_rewards(network, tokenizer, pairs, adapter, head, batch_size)
    return float(pairwise_loss(chosen, rejected)), pairwise_accuracy(chosen, rejected)


def train_value_head(
    network: RewardNetwork,
    tokenizer: Any,
    fit: Sequence[PreferencePair],
    calibration: Sequence[PreferencePair],
    *,
    adapter: str | None,
    head: nn.Linear,
    groups: list[dict[str, Any]],
    epochs: float,
    batch_size: int,
    max_steps: int | None,
    weight_decay: float,
    rng: random.Random,
    inference_batch_size: int = 32,
    evaluate_start: bool = True,
    deadline: Deadline = NO_DEADLINE,
    label: str = "value head",
    group_by_length: bool = True,
) -> PhaseReport:
    """Fit ``head`` (and whatever ``groups`` hold) on ``fit`` pairs; keep the best calibration state."""
    started = time.perf_counter()
    report = PhaseReport()
    params = [param for group in groups for param in group["params"]]
    if not fit or not params:
        report.seconds = time.perf_counter() - started
        return report
    steps_per_epoch = batches_per_epoch(len(fit), batch_size)
    total = max(1, math.ceil(epochs * steps_per_epoch))
    if max_steps is not None:
        total = min(total, max_steps)
    report.planned_steps = total
    optimizer = torch.optim.AdamW(groups, weight_decay=weight_decay)
    schedule = _linear_schedule(optimizer, total)

    best_loss, best_accuracy = float("inf"), float("nan")
    if evaluate_start:
        best_loss, best_accuracy = _evaluate(network, tokenizer, calibration, adapter, head, inference_batch_size)
        report.history.append({"epoch": 0, "calibration_loss": best_loss, "calibration_accuracy": best_accuracy})
    best_state = [param.detach().clone() for param in params]
    batches: list[list[PreferencePair]] = []
    with tqdm(total=total, desc=label, unit="step") as progress:
        for step in range(1, total + 1):
            if not batches:
                batches = length_grouped_batches(fit, batch_size, rng, group_by_length)
            batch_pairs = batches.pop()
            batch = encode_pairs(
                tokenizer,
                [pair.prompt for pair in batch_pairs] * 2,
                [pair.chosen for pair in batch_pairs] + [pair.rejected for pair in batch_pairs],
                network.spec.max_length,
            )
            network.train()
            with network.adapter(adapter):
                rewards = head(network.pooled(batch)).squeeze(-1)  # (2B,)
            loss = pairwise_loss(rewards[: len(batch_pairs)], rewards[len(batch_pairs) :])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(params, 1.0)
            optimizer.step()
            schedule.step()
            report.steps = step
            progress.update()
            progress.set_postfix(loss=f"{float(loss.detach()):.3f}")
            report.stopped_by_deadline = step < total and deadline.expired()
            if step % steps_per_epoch == 0 or step == total or report.stopped_by_deadline:
                epoch = math.ceil(step / steps_per_epoch)
                cal_loss, cal_accuracy = _evaluate(network, tokenizer, calibration, adapter, head, inference_batch_size)
                report.history.append({"epoch": epoch, "calibration_loss": cal_loss, "calibration_accuracy": cal_accuracy})
                progress.set_postfix(loss=f"{float(loss.detach()):.3f}", calibration_accuracy=f"{cal_accuracy:.3f}")
                logger.info("%s, epoch %d (step %d/%d): train loss %.4f, calibration loss %.4f, accuracy %.3f",
                            label, epoch, step, total, float(loss.detach()), cal_loss, cal_accuracy)
                if not calibration or cal_loss < best_loss:
                    best_loss, best_accuracy, report.best_epoch = cal_loss, cal_accuracy, epoch
                    best_state = [param.detach().clone() for param in params]
            if report.stopped_by_deadline:
                logger.warning("%s: the time budget ran out at step %d of %d; keeping the best state so far", label, step, total)
                break
    with torch.no_grad():
        for param, saved in zip(params, best_state):
            param.copy_(saved)
    network.eval()
    report.calibration_loss, report.calibration_accuracy = best_loss, best_accuracy
    report.seconds = time.perf_counter() - started
    return report


@dataclass(frozen=True)
class StatePairs:
    """Precomputed capability states of some pairs: chosen and rejected, each ``(N, K, H)``."""

    chosen: torch.Tensor
    rejected: torch.Tensor

    def __len__(self) -> int:
        return int(self.chosen.shape[0])

    def subset(self, rows: Sequence[int]) -> "StatePairs":
        index = torch.tensor(list(rows), dtype=torch.long)
        return StatePairs(self.chosen[index], self.rejected[index])


def _aggregator_loss(aggregator: nn.Module, pairs: StatePairs) -> tuple[float, float]:
    if len(pairs) == 0:
        return float("nan"), float("nan")
    aggregator.eval()
    with torch.no_grad():
        chosen, rejected = aggregator(pairs.chosen), aggregator(pairs.rejected)
    return float(pairwise_loss(chosen, rejected)), pairwise_accuracy(chosen, rejected)


def train_aggregator(
    aggregator: nn.Module,
    fit: StatePairs,
    calibration: StatePairs,
    *,
    max_epochs: int,
    patience: int,
    batch_size: int,
    learning_rate: float,
    weight_decay: float,
    rng: random.Random,
    deadline: Deadline = NO_DEADLINE,
    label: str = "aggregator",
) -> PhaseReport:
    """Fit an aggregator on precomputed states; early stopping on calibration loss."""
    started = time.perf_counter()
    report = PhaseReport()
    aggregator.requires_grad_(True)
    optimizer = torch.optim.AdamW(aggregator.parameters(), lr=learning_rate, weight_decay=weight_decay)
    best_loss, best_accuracy = _aggregator_loss(aggregator, calibration)
    best_state = {name: tensor.clone() for name, tensor in aggregator.state_dict().items()}
    waited = 0
    report.planned_steps = max_epochs * math.ceil(len(fit) / batch_size)
    progress = tqdm(total=max_epochs, desc=label, unit="epoch")
    for epoch in range(1, max_epochs + 1):
        if deadline.expired():
            report.stopped_by_deadline = True
            logger.warning("%s: the time budget ran out before epoch %d; keeping the best state so far", label, epoch)
            break
        aggregator.train()
        order = list(range(len(fit)))
        rng.shuffle(order)
        for start in range(0, len(order), batch_size):
            rows = fit.subset(order[start : start + batch_size])
            loss = pairwise_loss(aggregator(rows.chosen), aggregator(rows.rejected))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            report.steps += 1
        cal_loss, cal_accuracy = _aggregator_loss(aggregator, calibration)
        progress.update()
        progress.set_postfix(calibration_loss=f"{cal_loss:.3f}")
        if len(calibration) == 0 or cal_loss < best_loss:
            best_loss, best_accuracy, report.best_epoch, waited = cal_loss, cal_accuracy, epoch, 0
            best_state = {name: tensor.clone() for name, tensor in aggregator.state_dict().items()}
        else:
            waited += 1
            if waited >= patience:
                break
    progress.close()
    aggregator.load_state_dict(best_state)
    aggregator.requires_grad_(False)
    aggregator.eval()
    report.calibration_loss, report.calibration_accuracy = best_loss, best_accuracy
    report.seconds = time.perf_counter() - started
    return report
