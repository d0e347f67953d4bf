"""``coe train reward``: the CPU-sized DMoERM reward model, trained in three phases.

1. **Backbone + value head** on every overall preference pair (all categories together):
   MiniLM's transformer layers are fine-tuned with ``−log σ(r_c − r_r)``; its word
   embeddings (half of its 22.6 M parameters) stay as pretrained, which halves the optimiser's
   work and keeps a few hundred pairs from moving the vocabulary. This model is also the
   **baseline** (one value head, no adapters, no aggregators) reported next to DMoERM.
   ``train_backbone: false`` trains the value head alone on the frozen encoder.
2. **One LoRA adapter per capability**, shared by all categories, on top of the phase-1
   encoder (frozen), each with its own value head (started from the phase-1 head), trained on
   that capability's pairs.
3. **Outer layer**: each pair's category comes from its ``category`` field, else from the
   ``categorize`` callable (the stage-1 router in the CLI), else ``global``. The capability
   states ``z_k`` of every overall pair are computed once; a ``global`` aggregator is fitted
   on all of them, then every category with at least ``min_category_pairs`` fitted pairs gets
   its own aggregator, started from the global one and fine-tuned on the category's pairs.
   Smaller categories (and unknown ones) are scored by ``global``.

Model selection uses only a calibration split carved from the training file by prompt
(early stopping in every phase); the evaluation file is used for reporting only.

Real preference files need three more things, all reported in ``metrics.json``:

- ``skip_invalid`` skips rows that fail validation (``skipped``: counts by reason, example
  lines), up to ``max_skipped_share`` of a file;
- long transcripts lose their oldest turns, never the final exchange, identically on both
  sides of a pair (:mod:`services.rewards.truncation`; ``truncated``);
- data without capability labels has no phase 2: the model then has no adapters and the
  aggregators read the phase-1 encoder state (``capabilities_trained``, ``capabilities_without_data``).

``max_minutes`` bounds the training phases: the phase running when it expires keeps its best
calibration state, the phases after it are skipped, and ``stopped_early`` says where.
"""

from __future__ import annotations

import dataclasses
import logging
import random
import time
from collections import Counter
from pathlib import Path
from typing import Any, Callable, Literal, Sequence

import torch
from pydantic import BaseModel, ConfigDict, Field

from router_training.reward.data import (
    HELDOUT_PATH,
    TRAIN_PATH,
    PairFile,
    PreferencePair,
    calibration_split,
    load_pairs,
    with_categories,
)
from router_training.reward.phases import (
    Deadline,
    PhaseReport,
    StatePairs,
    head_rewards,
    pairwise_accuracy,
    train_aggregator,
    train_value_head,
)
from router_training.verifiable.tasks import DATA_DIR as VERIFIABLE_DIR
from router_training.verifiable.tasks import preference_pairs
from services.artifacts import ArtifactManifest, file_sha256, new_version
from services.rewards.model import RewardArtifactParts, write_reward_model
from services.rewards.network import RewardNetwork, pooled_states
from services.rewards.spec import DEFAULT_CAPABILITIES, GLOBAL_GROUP, LoraSpec, RewardModelSpec
from services.rewards.truncation import SPECIAL_TOKENS, fit_prompts, token_counts
from services.router.config import DEFAULT_CATEGORIES, EmbedderSource

logger = logging.getLogger(__name__)

METRIC_KEYS = (
    "pairwise_accuracy", "baseline_pairwise_accuracy", "per_category", "verifiable_heldout", "n_train", "n_train_verifiable",
    "n_eval", "seconds", "skipped", "truncated", "capabilities_trained", "capabilities_without_data", "stopped_early",
)


class PhaseSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    epochs: float = Field(gt=0, description="Passes over the phase's pairs (before steps_scale).")
    batch_size: int = Field(16, ge=1, description="Pairs per optimiser step.")
    learning_rate: float = Field(gt=0, description="Encoder (phase 1) or LoRA (phase 2) learning rate.")
    head_learning_rate: float = Field(1e-3, gt=0, description="Value-head learning rate.")
    weight_decay: float = Field(0.01, ge=0)
    group_by_length: bool = Field(
        True, description="Batches of pairs of similar length (less padding); false: batches of random pairs."
    )


class AggregatorSettings(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    max_epochs: int = Field(200, ge=1)
    patience: int = Field(30, ge=1, description="Epochs without a better calibration loss before stopping.")
    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(3e-4, gt=0)
    weight_decay: float = Field(0.01, ge=0)
    init: Literal["mean_of_heads", "random"] = Field(
        "mean_of_heads", description="Start as the average of the capability heads, or from random weights."
    )


class RewardTrainingArgs(BaseModel):
    """Hyper-parameters of one training run (``--hparams`` YAML overrides any of them)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    capabilities: tuple[str, ...] = DEFAULT_CAPABILITIES
    max_length: int = Field(256, ge=16, le=512)
    calibration_fraction: float = Field(0.2, gt=0, lt=1, description="Share of training prompts held for selection.")
    seed: int = 0
    train_backbone: bool = Field(True, description="Fine-tune the encoder in phase 1 (else only the value head).")
    phase1: PhaseSettings = PhaseSettings(epochs=2, learning_rate=5e-5)
    phase2: PhaseSettings = PhaseSettings(epochs=1, learning_rate=1e-3)
    lora: LoraSpec = LoraSpec()
    phase3: AggregatorSettings = AggregatorSettings()
    min_category_pairs: int = Field(40, ge=1, description="Fitted overall pairs a category needs for its own aggregator.")
    steps_scale: float = Field(1.0, gt=0, description="Multiplies the epochs of phases 1 and 2.")
    max_steps: int | None = Field(None, ge=1, description="Cap on optimiser steps per head and epochs per aggregator.")
    max_train_pairs: int | None = Field(None, ge=8, description="Use a seeded sample of this many training rows.")
    max_eval_pairs: int | None = Field(None, ge=1, description="Evaluate on a seeded sample of this many pairs.")
    evaluate_capabilities: bool = Field(True, description="Also report each adapter on the eval file's capability pairs.")
    verifiable_pairs: bool = Field(
        True,
        description="Add the verifiable tasks' right-over-wrong answers (reward split) as 'correctness' pairs, "
        "and as overall pairs: a wrong result makes the whole answer worse.",
    )
    max_verifiable_pairs: int | None = Field(None, ge=1, description="Use a seeded sample of this many verifiable tasks.")
    inference_batch_size: int = Field(32, ge=1)
    torch_threads: int | None = Field(None, ge=1, description="torch intra-op threads; default: torch's choice.")
    skip_invalid: bool = Field(False, description="Skip rows that fail validation (counted by reason) instead of stopping.")
    max_skipped_share: float = Field(
        0.2, ge=0, lt=1, description="With skip_invalid: stop when more than this share of a file's rows is invalid."
    )
    max_minutes: float | None = Field(None, gt=0, description="Training budget; stops at the best state so far.")
    attention_dropout: float = Field(
        0.0, ge=0, lt=1,
        description="Dropout on the encoder's attention weights while training. Off by default: on CPU, with it "
        "torch's attention falls back to its reference kernel and draws a random mask over every attention "
        "matrix, which took 30% of a phase-1 step on long transcripts; hidden-state dropout stays.",
    )

    @classmethod
    def quick(cls) -> "RewardTrainingArgs":
        """A smoke-test run: a small sample and a couple of steps per phase (seconds, not minutes)."""
        return cls(max_steps=2, max_train_pairs=96, max_eval_pairs=16, min_category_pairs=4)

    @classmethod
    def budget(cls) -> "RewardTrainingArgs":
        """A seeded sample of the pairs, one pass in phase 1, shorter aggregator training and no
        per-capability report: the reward model in under four minutes (``coe train all`` uses it).

        One pass needs a higher encoder learning rate than the two of the full run: measured with
        the verifiable pairs, 2e-4 gave held-out accuracy 0.81 and 0.78 (seeds 0 and 1; math 0.83
        and 0.72) where 5e-5 gave 0.75 (math 0.61).
        """
        return cls(
            phase1=PhaseSettings(epochs=1, learning_rate=2e-4),
            phase3=AggregatorSettings(max_epochs=80, patience=20),
            max_train_pairs=640,
            evaluate_capabilities=False,
        )


def _sample(pairs: list[PreferencePair], limit: int | None, seed: int) -> list[PreferencePair]:
    if limit is None or len(pairs) <= limit:
        return pairs
    return random.Random(seed).sample(pairs, limit)


def _accuracy_by_category(chosen: torch.Tensor, rejected: torch.Tensor, categories: Sequence[str]) -> dict[str, dict[str, Any]]:
    result = {}
    for category in sorted(set(categories)):
        rows = torch.tensor([i for i, name in enumerate(categories) if name == category], dtype=torch.long)
        result[category] = {"pairwise_accuracy": round(pairwise_accuracy(chosen[rows], rejected[rows]), 4), "n": len(rows)}
    return result


def _states(network: RewardNetwork, tokenizer: Any, pairs: Sequence[PreferencePair], batch_size: int) -> StatePairs:
    """The states the aggregators read (``z_k``) of chosen and rejected responses, each ``(N, K, H)``."""
    states = pooled_states(
        network, tokenizer, [p.prompt for p in pairs] * 2, [p.chosen for p in pairs] + [p.rejected for p in pairs],
        network.spec.state_sources, batch_size=batch_size,
    )
    return StatePairs(states[: len(pairs)], states[len(pairs) :])


def fit_to_window(tokenizer: Any, pairs: Sequence[PreferencePair], max_length: int) -> tuple[list[PreferencePair], dict[str, int]]:
    """The pairs with each prompt cut to the encoder's window (oldest turns first, the same cut
    for both responses), and how many were cut, once, before training reads them many times."""
    prompts = [p.prompt for p in pairs] * 2
    responses = [p.chosen for p in pairs] + [p.rejected for p in pairs]
    fitted = fit_prompts(tokenizer, prompts, responses, max_length)[: len(pairs)]
    counts = token_counts(tokenizer, [fit.text for fit in fitted] + responses)
    prompt_tokens, chosen_tokens, rejected_tokens = (counts[i * len(pairs) : (i + 1) * len(pairs)] for i in range(3))
    window = max_length - SPECIAL_TOKENS
    report = {
        "pairs": len(pairs),
        "prompt_turns_dropped": sum(1 for fit in fitted if fit.dropped_turns),
        "final_turn_cut": sum(1 for fit in fitted if fit.final_turn_cut),
        "response_cut": sum(1 for row in zip(prompt_tokens, chosen_tokens, rejected_tokens) if row[0] + max(row[1:]) > window),
    }
    return [dataclasses.replace(pair, prompt=fit.text) for pair, fit in zip(pairs, fitted)], report


def _report_skipped(files: dict[str, tuple[Path, PairFile]]) -> None:
    """Print what a lenient read left out, by reason with example lines, where a user sees it."""
    for label, (path, loaded) in files.items():
        skipped = loaded.skipped
        if not skipped.total:
            continue
        print(f"{label} data {path}: skipped {skipped.total} of {skipped.rows} rows ({skipped.share:.1%})")
        for reason, count in sorted(skipped.counts.items()):
            lines = ", ".join(str(line) for line in skipped.example_lines[reason])
            print(f"  {reason:<20} {count:>5}  e.g. lines {lines}")


def load_backbone(attention_dropout: float | None = None) -> tuple[Any, Any, str]:
    """Pretrained MiniLM encoder, its tokenizer, and its recorded reference (offline);
    ``attention_dropout`` replaces the pretrained model's own (0.1)."""
    from transformers import AutoModel, AutoTokenizer

    from services.experts.loading import force_offline
    from services.router.embedder import locate_embedder

    force_offline()
    source = EmbedderSource()
    folder = locate_embedder(source)
    overrides = {} if attention_dropout is None else {"attention_probs_dropout_prob": attention_dropout}
    return AutoModel.from_pretrained(str(folder), **overrides), AutoTokenizer.from_pretrained(str(folder)), source.reference


def train_reward_model(
    out: Path,
    args: RewardTrainingArgs | None = None,
    *,
    train_path: Path = TRAIN_PATH,
    eval_path: Path = HELDOUT_PATH,
    taxonomy: tuple[str, ...] = DEFAULT_CATEGORIES,
    categorize: Callable[[list[str]], list[str]] | None = None,
    verifiable_dir: Path = VERIFIABLE_DIR,
    key: bytes | None = None,
) -> dict[str, Any]:
    """Train, evaluate and write the artifact to ``out``; returns the ``metrics.json`` content.

    With ``args.verifiable_pairs`` the tasks in ``verifiable_dir`` add training pairs (their
    ``reward`` split) and a second held-out report (their ``heldout`` split), per category.
    With ``key`` (the artifact signing key) the artifact is signed.
    """
    args = args or RewardTrainingArgs()
    started = time.perf_counter()
    deadline = Deadline(args.max_minutes)
    if args.torch_threads is not None:
        torch.set_num_threads(args.torch_threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    lenient = args.max_skipped_share if args.skip_invalid else None
    train_file = load_pairs(train_path, taxonomy, args.capabilities, max_skipped_share=lenient)
    eval_file = load_pairs(eval_path, taxonomy, args.capabilities, max_skipped_share=lenient)
    _report_skipped({"train": (train_path, train_file), "eval": (eval_path, eval_file)})
    train_rows = _sample(train_file.pairs, args.max_train_pairs, args.seed)
    checked_train = [pair for pair in preference_pairs(verifiable_dir, "reward") if pair.category in taxonomy] if args.verifiable_pairs else []
    checked_train = _sample(checked_train, args.max_verifiable_pairs, args.seed)
    checked_eval = [dataclasses.replace(pair, capability=None) for pair in preference_pairs(verifiable_dir, "heldout") if pair.category in taxonomy]
    checked_eval = _sample(checked_eval, args.max_eval_pairs, args.seed)
    if "correctness" in args.capabilities:
        train_rows += checked_train
    train_rows += [dataclasses.replace(pair, capability=None) for pair in checked_train]
    eval_rows = eval_file.pairs
    eval_overall = [pair for pair in eval_rows if pair.capability is None] or eval_rows
    eval_overall = _sample(eval_overall, args.max_eval_pairs, args.seed)

    encoder, tokenizer, reference = load_backbone(args.attention_dropout)
    train_rows, train_truncated = fit_to_window(tokenizer, train_rows, args.max_length)
    eval_overall, eval_truncated = fit_to_window(tokenizer, eval_overall, args.max_length)
    if train_truncated["prompt_turns_dropped"] or eval_truncated["prompt_turns_dropped"]:
        logger.info("long transcripts: %d training and %d evaluation pairs lose their oldest turns to the %d-token window",
                    train_truncated["prompt_turns_dropped"], eval_truncated["prompt_turns_dropped"], args.max_length)
    fit, calibration = calibration_split(train_rows, args.calibration_fraction, args.seed)
    overall_fit = [p for p in fit if p.capability is None]
    overall_cal = [p for p in calibration if p.capability is None]
    if not overall_fit:
        raise ValueError(f"{train_path}: no overall preference pairs (rows without 'capability') to train on")
    fit_categories = with_categories(overall_fit, categorize)
    cal_categories = with_categories(overall_cal, categorize)
    eval_categories = with_categories(eval_overall, categorize)
    counts = Counter(fit_categories)
    own = tuple(c for c in taxonomy if counts[c] >= args.min_category_pairs and c in cal_categories)
    # An adapter needs pairs of its own: a capability without any would only copy phase 1.
    trained = tuple(c for c in args.capabilities if any(p.capability == c for p in fit))
    without_data = [c for c in args.capabilities if c not in trained]
    if without_data:
        logger.info("no training pairs for capabilities %s: no adapters for them%s", without_data,
                    "" if trained else "; the aggregators read the phase-1 encoder state")

    spec = RewardModelSpec(
        capabilities=trained, categories=taxonomy, aggregators=(GLOBAL_GROUP, *own),
        hidden_size=encoder.config.hidden_size, max_length=args.max_length, lora=args.lora, backbone=reference,
    )
    network = RewardNetwork(encoder, spec)
    steps = {"epochs_scale": args.steps_scale, "max_steps": args.max_steps, "rng": rng,
             "inference_batch_size": args.inference_batch_size, "deadline": deadline}
    times: dict[str, float] = {}
    stopped_in: str | None = None

    # Phase 1: encoder + value head, no adapters; also the baseline.
    t0 = time.perf_counter()
    logger.info("phase 1: %s and value head on %d overall pairs", "encoder" if args.train_backbone else "frozen encoder", len(overall_fit))
    base_params = [p for name, p in network.encoder.named_parameters() if "lora_" not in name and ".embeddings." not in name]
    for param in network.parameters():
        param.requires_grad_(False)
    groups = [{"params": list(network.value_head.parameters()), "lr": args.phase1.head_learning_rate}]
    if args.train_backbone:
        groups.insert(0, {"params": base_params, "lr": args.phase1.learning_rate})
    for group in groups:
        for param in group["params"]:
            param.requires_grad_(True)
    phase1 = _run_head(network, tokenizer, overall_fit, overall_cal, None, network.value_head, groups, args.phase1, steps,
                       label="phase 1: encoder and value head")
    stopped_in = "phase1" if phase1.stopped_by_deadline else None
    base_chosen, base_rejected = head_rewards(network, tokenizer, eval_overall, None, network.value_head, args.inference_batch_size)
    times["phase1"] = time.perf_counter() - t0

    # Phase 2: one LoRA adapter + head per capability; the encoder stays as phase 1 left it.
    t0 = time.perf_counter()
    phase2: dict[str, PhaseReport] = {}
    for capability in trained:
        head = network.capability_heads[capability]
        head.load_state_dict(network.value_head.state_dict())
        if deadline.expired():  # the adapter stays the identity: this capability scores as phase 1 does
            stopped_in = stopped_in or f"phase2:{capability}"
            continue
        network.encoder.set_adapter(capability)
        for param in network.parameters():
            param.requires_grad_(False)
        lora_params = [p for name, p in network.encoder.named_parameters() if "lora_" in name and f".{capability}." in name]
        groups = [{"params": lora_params, "lr": args.phase2.learning_rate},
                  {"params": list(head.parameters()), "lr": args.phase2.head_learning_rate}]
        for param in [*lora_params, *head.parameters()]:
            param.requires_grad_(True)
        cap_fit = [p for p in fit if p.capability == capability]
        cap_cal = [p for p in calibration if p.capability == capability]
        logger.info("phase 2: adapter %r on %d pairs", capability, len(cap_fit))
        phase2[capability] = _run_head(network, tokenizer, cap_fit, cap_cal, capability, head, groups, args.phase2, steps,
                                       label=f"phase 2: adapter {capability}")
        if phase2[capability].stopped_by_deadline:
            stopped_in = stopped_in or f"phase2:{capability}"
    for param in network.parameters():
        param.requires_grad_(False)
    times["phase2"] = time.perf_counter() - t0

    # Phase 3: aggregators on precomputed capability states, adapters frozen.
    t0 = time.perf_counter()
    if deadline.expired():
        stopped_in = stopped_in or "phase3"
        _start_aggregators(network, args)  # untrained: the mean of the heads, as DMoERM starts
        phase3: dict[str, PhaseReport] = {}
    else:
        logger.info("phase 3: capability states of %d overall pairs, then the aggregators", len(overall_fit) + len(overall_cal))
        fit_states = _states(network, tokenizer, overall_fit, args.inference_batch_size)
        cal_states = _states(network, tokenizer, overall_cal, args.inference_batch_size)
        phase3 = _fit_aggregators(network, fit_states, fit_categories, cal_states, cal_categories, args, rng, deadline)
        if any(report.stopped_by_deadline for report in phase3.values()):
            stopped_in = stopped_in or "phase3"
    times["phase3"] = time.perf_counter() - t0
    if stopped_in:
        logger.warning("the %s-minute budget ran out in %s: the model keeps the best states reached", args.max_minutes, stopped_in)

    t0 = time.perf_counter()
    logger.info("evaluation on %d held-out pairs", len(eval_overall))
    chosen, rejected = _aggregated_rewards(network, tokenizer, eval_overall, eval_categories, args.inference_batch_size)
    capability_eval = _capability_accuracy(network, tokenizer, eval_rows, args) if args.evaluate_capabilities else {}
    checked_accuracy = _verifiable_accuracy(network, tokenizer, checked_eval, args) if checked_eval else None
    times["evaluation"] = time.perf_counter() - t0
    seconds = time.perf_counter() - started

    metrics = {
        "pairwise_accuracy": round(pairwise_accuracy(chosen, rejected), 4),
        "baseline_pairwise_accuracy": round(pairwise_accuracy(base_chosen, base_rejected), 4),
        "per_category": _accuracy_by_category(chosen, rejected, eval_categories),
        "verifiable_heldout": checked_accuracy,
        "n_train": len(train_rows),
        "n_train_verifiable": len(checked_train),
        "n_eval": len(eval_overall),
        "seconds": round(seconds, 1),
        "skipped": {"train": train_file.skipped.as_dict(), "eval": eval_file.skipped.as_dict()} if args.skip_invalid else None,
        "truncated": {"train": train_truncated, "eval": eval_truncated},
        "capabilities_trained": list(trained),
        "capabilities_without_data": without_data,
        "stopped_early": {"max_minutes": args.max_minutes, "in": stopped_in} if stopped_in else None,
    }
    details = {
        "phase_seconds": {name: round(value, 1) for name, value in times.items()},
        "baseline_per_category": _accuracy_by_category(base_chosen, base_rejected, eval_categories),
        "capabilities_on_eval": capability_eval,
        "phase1": phase1.as_dict(),
        "phase2": {name: report.as_dict() for name, report in phase2.items()},
        "phase3": {name: report.as_dict() for name, report in phase3.items()},
        "n_fit": len(fit), "n_calibration": len(calibration),
        "fit_pairs_per_category": dict(sorted(counts.items())),
    }
    manifest = ArtifactManifest(
        kind="reward-model", name="dmoerm", version=new_version(), base=reference,
        data={"train": {"path": str(train_path), "sha256": file_sha256(Path(train_path))},
              "eval": {"path": str(eval_path), "sha256": file_sha256(Path(eval_path))},
              **({"verifiable": {path.name: {"path": str(path), "sha256": file_sha256(path)}
                                 for path in sorted(Path(verifiable_dir).glob("*.jsonl"))}} if checked_train else {})},
        training=args.model_dump(mode="json"), metrics={**metrics, **details},
    )
    write_reward_model(Path(out), RewardArtifactParts(network, tokenizer, encoder.config, manifest, metrics), key)
    logger.info("reward model written to %s: accuracy %.3f (baseline %.3f) in %.0f s",
                out, metrics["pairwise_accuracy"], metrics["baseline_pairwise_accuracy"], seconds)
    return metrics


def _run_head(network: RewardNetwork, tokenizer: Any, fit: list[PreferencePair], calibration: list[PreferencePair],
              adapter: str | None, head: torch.nn.Linear, groups: list[dict[str, Any]], settings: PhaseSettings,
              steps: dict[str, Any], label: str) -> PhaseReport:
    return train_value_head(
        network, tokenizer, fit, calibration, adapter=adapter, head=head, groups=groups,
        epochs=settings.epochs * steps["epochs_scale"], batch_size=settings.batch_size, max_steps=steps["max_steps"],
        weight_decay=settings.weight_decay, rng=steps["rng"], inference_batch_size=steps["inference_batch_size"],
        evaluate_start=adapter is not None,  # phase 2 may keep the phase-1 model; phase 1 starts from a random head
        deadline=steps["deadline"], label=label, group_by_length=settings.group_by_length,
    )


def _start_aggregators(network: RewardNetwork, args: RewardTrainingArgs) -> None:
    """Every aggregator as the mean of the heads it reads (``init: mean_of_heads``), or left as built."""
    if args.phase3.init != "mean_of_heads":
        return
    heads = [network.capability_heads[name] for name in network.spec.capabilities] or [network.value_head]
    for aggregator in network.aggregators.values():
        aggregator.start_as_mean_of(heads)


def _fit_aggregators(network: RewardNetwork, fit: StatePairs, fit_categories: list[str], calibration: StatePairs,
                     cal_categories: list[str], args: RewardTrainingArgs, rng: random.Random,
                     deadline: Deadline) -> dict[str, PhaseReport]:
    """The global aggregator on every pair, then each own-category one started from it."""
    settings = args.phase3
    options = {"max_epochs": min(settings.max_epochs, args.max_steps or settings.max_epochs),
               "patience": settings.patience, "batch_size": settings.batch_size,
               "learning_rate": settings.learning_rate, "weight_decay": settings.weight_decay, "rng": rng,
               "deadline": deadline}
    _start_aggregators(network, args)
    shared = network.aggregators[GLOBAL_GROUP]
    reports = {GLOBAL_GROUP: train_aggregator(shared, fit, calibration, label="phase 3: aggregator global", **options)}
    for category in network.spec.aggregators:
        if category == GLOBAL_GROUP:
            continue
        aggregator = network.aggregators[category]
        aggregator.load_state_dict(shared.state_dict())
        own_fit = fit.subset([i for i, name in enumerate(fit_categories) if name == category])
        own_cal = calibration.subset([i for i, name in enumerate(cal_categories) if name == category])
        reports[category] = train_aggregator(aggregator, own_fit, own_cal, label=f"phase 3: aggregator {category}", **options)
    return reports


def _aggregated_rewards(network: RewardNetwork, tokenizer: Any, pairs: Sequence[PreferencePair],
                        categories: Sequence[str], batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
    """The final rewards of chosen and rejected responses, each through its category's aggregator."""
    states = _states(network, tokenizer, pairs, batch_size)
    groups = [network.spec.group_of(category) for category in categories]
    with torch.no_grad():
        return network.aggregate(states.chosen, groups), network.aggregate(states.rejected, groups)


def _verifiable_accuracy(network: RewardNetwork, tokenizer: Any, pairs: Sequence[PreferencePair],
                         args: RewardTrainingArgs) -> dict[str, Any]:
    """How often the model ranks a held-out task's right answer above its wrong one, per category."""
    categories = [pair.category or GLOBAL_GROUP for pair in pairs]
    chosen, rejected = _aggregated_rewards(network, tokenizer, pairs, categories, args.inference_batch_size)
    return {"pairwise_accuracy": round(pairwise_accuracy(chosen, rejected), 4), "n": len(pairs),
            "per_category": _accuracy_by_category(chosen, rejected, categories)}


def _capability_accuracy(network: RewardNetwork, tokenizer: Any, pairs: Sequence[PreferencePair],
                         args: RewardTrainingArgs) -> dict[str, dict[str, Any]]:
    """Each adapter's head against the phase-1 head on the eval file's pairs of its capability."""
    result = {}
    for capability in network.spec.capabilities:
        own = _sample([p for p in pairs if p.capability == capability], args.max_eval_pairs, args.seed)
        if not own:
            continue
        adapter = head_rewards(network, tokenizer, own, capability, network.capability_heads[capability], args.inference_batch_size)
        base = head_rewards(network, tokenizer, own, None, network.value_head, args.inference_batch_size)
        result[capability] = {"adapter_accuracy": round(pairwise_accuracy(*adapter), 4),
                              "baseline_accuracy": round(pairwise_accuracy(*base), 4), "n": len(own)}
    return result
