"""``coe train all``: embedder → classifier → reward model → mapping, as one job with one report.

1. **Data** is read and checked first (router splits, preference pairs, verifiable tasks), so a bad line fails
   in seconds, naming its file and line, rather than after minutes of training.
2. **Embedders**: the contrastive dense and MoE variants are trained on ``train``.
3. **Classifier**: a head is fitted on the frozen embedder and on each trained one; the one
   with the best calibration accuracy serves (the ablation table).
4. **Reward model**: DMoERM, with the chosen stage-1 classifier naming uncategorised pairs, and
   the verifiable tasks' right-over-wrong answers as "correctness" pairs.
5. **Router**: the winning head and embedder are published as a new version (scores from the
   config's ``initial_scores``, not made current), then the **mapping** job scores every expert
   (checks where a category has them, the reward model elsewhere, with bootstrap intervals),
   publishes the final version on top of it, and checks it end to end on held-out verifiable
   tasks against the current router.
6. **Report**: metrics JSON, confusion matrix, reward accuracy, the expert scores with their
   intervals, the end-to-end check, the quality-vs-cost curves, and the published router
   evaluated through the serving code on the test split beside the external set (category,
   fallback, out-of-distribution check and the share of prompts reaching the right expert).

The new version is made current only after every stage has succeeded, so serving never picks
up a router whose report failed, and only if it routes the held-out verifiable tasks no worse
than the current router (``--force-activate`` overrides that); the report directory appears in
one rename.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from router_training.embedder.train import EmbedderTrainingArgs, train_embedder
from router_training.mapping.job import MappingResult, format_table, run_mapping
from router_training.pipeline import report
from router_training.pipeline.ablation import Ablation, format_ablation, run_ablation
from router_training.pipeline.sweep import budget_sweep, default_lambdas, references, sweep
from router_training.reward.data import load_pairs
from router_training.reward.train import RewardTrainingArgs, train_reward_model
from router_training.verifiable.tasks import read_tasks
from router_training.router.evaluate import evaluate_splits, format_evaluation, read_external
from router_training.embedder.onnx_export import export_if_possible
from router_training.router.train import RouterTrainingArgs, Splits, plot_confusion, publish_router, score_table
from services.artifacts import artifact_directory, signing_key
from services.config import AppConfig
from services.experts.costs import resolve_costs
from services.rewards.model import RewardModel, read_metrics as read_reward_metrics
from services.router.artifact import RouterArtifact
from services.router.loader import RouterFactory
from services.router.store import RouterStore

logger = logging.getLogger(__name__)

DATA_ROOT = Path(__file__).resolve().parents[1] / "data"  # router/{train,calibration,test}.jsonl, reward/{train,heldout}.jsonl
STAGES = ("data", "embedders", "classifier", "reward", "mapping", "report")
TAUS = (0.0, 0.3, 0.5, 0.7, 0.8, 0.9)


@dataclass(frozen=True)
class PipelineArgs:
    """Inputs and knobs of one pipeline run; the defaults fit in 15 minutes on 2 CPU cores.

    The stages' defaults here are lighter than those of their own commands (``coe train
    reward`` trains longer), so that the whole pipeline keeps to that budget.
    """

    out: Path  # report directory
    data: Path = DATA_ROOT
    reward_out: Path | None = None  # default: the config's training.reward_model
    reward_model: Path | None = None  # a trained reward model to use instead of training one
    variants: tuple[str, ...] = ("dense", "moe")
    embedder: EmbedderTrainingArgs = field(default_factory=EmbedderTrainingArgs.budget)
    reward: RewardTrainingArgs = field(default_factory=RewardTrainingArgs.budget)
    router: RouterTrainingArgs = RouterTrainingArgs()
    use_ray: bool = False
    activate: bool = True
    force_activate: bool = False  # make it current even if it routes held-out verifiable prompts worse

    @property
    def router_data(self) -> Path:
        return self.data / "router"

    @property
    def verifiable_data(self) -> Path:
        return self.data / "verifiable"

    @property
    def reward_train(self) -> Path:
        return self.data / "reward" / "train.jsonl"

    @property
    def reward_eval(self) -> Path:
        return self.data / "reward" / "heldout.jsonl"


@dataclass
class PipelineResult:
    artifact: RouterArtifact
    report_dir: Path
    metrics: dict[str, Any]
    seconds: dict[str, float] = field(default_factory=dict)


class StageClock:
    """Times each stage and shows one progress bar over the stages."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self._bar = tqdm(total=len(STAGES), desc="coe train all", unit="stage")

    @contextmanager
    def stage(self, name: str) -> Iterator[None]:
        self._bar.set_postfix_str(name)
        started = time.perf_counter()
        yield
        self.seconds[name] = round(time.perf_counter() - started, 1)
        logger.info("stage %s done in %.1f s", name, self.seconds[name])
        self._bar.update()

    def close(self) -> None:
        self._bar.close()


def check_data(config: AppConfig, args: PipelineArgs) -> Splits:
    """Read every input once before any training; errors name the file and line."""
    assert config.router is not None
    taxonomy = config.router.categories
    missing = [path for path in (args.router_data / "train.jsonl", args.reward_train, args.reward_eval) if not path.is_file()]
    if missing:
        raise FileNotFoundError(
            f"--data {args.data} must hold router/{{train,calibration,test}}.jsonl and reward/{{train,heldout}}.jsonl; "
            f"missing: {', '.join(str(path) for path in missing)}"
        )
    splits = Splits.read(args.router_data, taxonomy)
    lenient = args.reward.max_skipped_share if args.reward.skip_invalid else None
    for path in (args.reward_train, args.reward_eval):
        load_pairs(path, taxonomy, args.reward.capabilities, max_skipped_share=lenient)
    read_tasks(args.verifiable_data)  # optional: without it every category is judged by the reward model
    return splits


def train_all(config: AppConfig, args: PipelineArgs) -> PipelineResult:
    """Run every stage; returns the published router version and the report's metrics."""
    router = config.router
    if router is None:
        raise ValueError("the config has no `router` section")
    if args.reward_model is not None and args.reward_out is not None:
        raise ValueError("give either a reward model to use (reward_model) or where to train one (reward_out), not both")
    reward_out = args.reward_model or args.reward_out or Path(config.training.reward_model)
    key = signing_key(config)  # what the pipeline publishes is signed with it, and what it reuses must be
    clock = StageClock()
    try:
        with artifact_directory(Path(args.out)) as staging:
            with clock.stage("data"):
                splits = check_data(config, args)
            with clock.stage("embedders"):
                trained = {
                    variant: train_embedder(
                        router.embedder, router.categories, splits.examples["train"], staging / "embedders" / variant,
                        variant, args.embedder, key=key,  # type: ignore[arg-type]
                    )
                    for variant in args.variants
                }
            with clock.stage("classifier"):
                ablation = run_ablation(splits, router, trained, args.router)
                print(format_ablation(ablation.rows))
            with clock.stage("reward"):
                winner = ablation.winner
                if args.reward_model is not None:
                    reward_metrics = reused_reward_metrics(args.reward_model, key)
                else:
                    reward_metrics = train_reward_model(
                        reward_out, args.reward, train_path=args.reward_train, eval_path=args.reward_eval,
                        taxonomy=router.categories, categorize=lambda texts: winner.categorize(texts, router.categories),
                        verifiable_dir=args.verifiable_data, key=key,
                    )
            with clock.stage("mapping"):
                # Served from its int8 export, like `coe train router`'s (the head stays fitted on fp32).
                exported = winner.folder is not None and router.embedding_backend == "onnx" and export_if_possible(winner.folder)
                base = publish_router(
                    config, winner.fit, winner.embedder, splits, scores=score_table(config),
                    training={"pipeline": "coe train all", "embedder_variant": winner.variant, "onnx_export": exported,
                              "embedder": asdict(args.embedder),
                              **{key: value for key, value in asdict(args.router).items() if key != "data_dir"}},
                    extra_metrics={"ablation": ablation.rows}, embedder_dir=winner.folder, activate=False,
                )
                mapping = run_mapping(
                    config, RewardModel.load(reward_out, key=key), data_dir=args.router_data, tasks_dir=args.verifiable_data,
                    use_ray=args.use_ray, activate=args.activate, force_activate=args.force_activate, base=base,
                    make_current=False,  # only once the report is written
                )
                assert mapping.artifact is not None
                print(format_table(mapping, config.general_expert))
            with clock.stage("report"):
                metrics = write_report(staging, config, splits, ablation, reward_metrics, mapping, clock.seconds)
        artifact = mapping.artifact
        if mapping.activated:
            RouterStore.from_config(config).use(artifact.version)
    finally:
        clock.close()
    metrics["stage_seconds"] = clock.seconds
    report.write_metrics(Path(args.out) / "metrics.json", metrics)
    return PipelineResult(artifact=artifact, report_dir=Path(args.out).resolve(), metrics=metrics, seconds=clock.seconds)


def reused_reward_metrics(folder: Path, key: bytes | None = None) -> dict[str, Any]:
    """The held-out figures a reward model was trained with, once it loads and verifies.

    Reusing one skips the slowest stage when only the router data changed: the reward model
    judges answers, and does not depend on the router being trained.
    """
    model = RewardModel.load(folder, key=key)  # verified: a corrupt, foreign or unsigned folder stops the run here
    return {**read_reward_metrics(folder), "reused": {"path": str(Path(folder).resolve()), "version": model.version}}


def write_report(
    folder: Path,
    config: AppConfig,
    splits: Splits,
    ablation: Ablation,
    reward_metrics: dict[str, Any],
    mapping: MappingResult,
    seconds: dict[str, float],
) -> dict[str, Any]:
    """The charts and ``metrics.json``; returns the metrics."""
    assert config.router is not None and mapping.artifact is not None
    categories = config.router.categories
    winner = ablation.winner
    plot_confusion(winner.fit.metrics["test"], categories, folder / "confusion.png")
    report.plot_reward_accuracy(reward_metrics, folder / "reward_accuracy.png")
    report.plot_mapping_evidence(mapping.evidence, mapping.assignment.expert_for, folder / "mapping_scores.png")
    costs = resolve_costs(config)
    served = RouterFactory(config).build(mapping.artifact)
    evaluation = evaluate_splits(served, splits.examples["test"], read_external(categories, splits.data_dir), winner.fit.test_embeddings)
    print(format_evaluation(evaluation))
    points = sweep(served, mapping, costs, default_lambdas(served), list(TAUS))
    budgets = budget_sweep(served, mapping, costs, mapping.artifact.manifest.category_shares)
    anchors = references(mapping, costs)
    report.plot_quality_cost(points, budgets, anchors, folder / "quality_vs_cost.png")
    metrics: dict[str, Any] = {
        "router_version": mapping.artifact.version,
        "ablation": {"rows": ablation.rows, "chosen": ablation.chosen},
        "classifier": winner.fit.metrics["test"] | {"calibration_accuracy": winner.fit.calibration_accuracy},
        "out_of_distribution": winner.fit.metrics["out_of_distribution"],
        "evaluation": evaluation,
        "reward": reward_metrics,
        "mapping": {
            "scores": mapping.scores,
            "evidence": {category: item.as_dict() for category, item in mapping.evidence.items()},
            "reward_agreement": mapping.reward_agreement,
            "assignment": mapping.assignment.expert_for,
            "deployed": sorted(mapping.assignment.deployed),
        },
        "end_to_end": mapping.end_to_end.as_dict() if mapping.end_to_end else None,
        "activation": {"made_current": mapping.activated, "why": mapping.activation},
        "quality_vs_cost": {"lambda_and_tau": points, "budget": budgets, "references": anchors},
        "stage_seconds": dict(seconds),
    }
    report.write_metrics(folder / "metrics.json", metrics)
    return metrics

