"""Fine-tune the router's sentence embedder contrastively, dense or with category experts.

1. Pairs (anchor, positive) of two prompts of one category come from the train split, as routing
   texts (``pairs.category_pairs``); batches hold one pair per category
   (``pairs.OnePairPerCategoryBatchSampler``), so in-batch negatives are never of the anchor's
   category.
2. ``dense``: the encoder is fine-tuned with ``MultipleNegativesRankingLoss``. ``moe``: the chosen
   layers' feed-forward blocks become one expert per category (``services.router.moe_embedder``),
   routed by the known category, and a sentence-level gate learns to predict that category
   (``losses.MoEContrastiveLoss``). Both run in ``SentenceTransformerTrainer``.
3. The model is written, atomically, as a standard sentence-transformers directory plus
   ``manifest.json`` (kind ``embedder``): hashes of every file, the arguments, the taxonomy and
   the training figures.

Training reads at most ``max_seq_length`` tokens per text (the data collator truncates); the
saved model keeps the base model's window for serving.
"""

from __future__ import annotations

import logging
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from router_training.embedder.pairs import OnePairPerCategoryBatchSampler, category_pairs, data_fingerprint
from router_training.router.data import OUT_OF_SCOPE, Example
from services.artifacts import ArtifactManifest, artifact_directory, hash_files, new_version, write_manifest
from services.experts.loading import force_offline
from services.router.config import EmbedderSource
from services.router.embedder import locate_embedder

logger = logging.getLogger(__name__)

Variant = Literal["dense", "moe"]
VARIANTS: tuple[str, ...] = ("dense", "moe")
GATE_PARAMETERS = r"\.gate\."  # names of the gate's weight and bias, for their own learning rate


@dataclass(frozen=True)
class EmbedderTrainingArgs:
    """Defaults train each variant in about two minutes on 2 CPU cores on the seed train split."""

    epochs: float = 1.0
    learning_rate: float = 5e-5  # encoder (and experts)
    max_steps: int | None = None  # overrides epochs when set
    moe_layers: tuple[int, ...] = (3,)  # encoder layers whose feed-forward becomes experts (moe)
    gate_loss_weight: float = 1.0  # weight of the gate's cross-entropy next to the ranking loss (moe)
    gate_learning_rate: float = 2e-3  # the gate starts from zero, so it needs a larger step than the encoder
    max_seq_length: int = 64  # tokens read per text while training (three quarters of routing texts fit)
    scale: float = 20.0  # inverse temperature of the ranking loss
    warmup_ratio: float = 0.1
    seed: int = 0

    def __post_init__(self) -> None:
        checks = [
            (self.epochs > 0, f"epochs must be > 0; got {self.epochs}"),
            (self.learning_rate > 0, f"learning_rate must be > 0; got {self.learning_rate}"),
            (self.max_steps is None or self.max_steps >= 1, f"max_steps must be None or >= 1; got {self.max_steps}"),
            (len(self.moe_layers) > 0 and len(set(self.moe_layers)) == len(self.moe_layers),
             f"moe_layers must name distinct encoder layers, e.g. (3,); got {self.moe_layers}"),
            (self.gate_loss_weight >= 0, f"gate_loss_weight must be >= 0; got {self.gate_loss_weight}"),
            (self.gate_learning_rate > 0, f"gate_learning_rate must be > 0; got {self.gate_learning_rate}"),
            (self.max_seq_length >= 8, f"max_seq_length must be >= 8 tokens; got {self.max_seq_length}"),
            (self.scale > 0, f"scale must be > 0; got {self.scale}"),
            (0 <= self.warmup_ratio < 1, f"warmup_ratio must be in [0, 1); got {self.warmup_ratio}"),
        ]
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    @classmethod
    def budget(cls) -> "EmbedderTrainingArgs":
        """A third of an epoch: about 90 s on 2 cores on the seed train split, for ``make run``'s
        first router and each variant of ``coe train all``. Measured on the seed data, it gives
        most of a full epoch's gain over the frozen embedder (test accuracy 0.953 against 0.964
        for a full epoch and 0.909 frozen)."""
        return cls(epochs=0.3)


def build_model(base_path: Path, variant: Variant, taxonomy: tuple[str, ...], args: EmbedderTrainingArgs) -> Any:
    """The model to train: the base model itself (dense), or the base model with its
    ``moe_layers`` replicated into one expert per category and a gate (moe)."""
    from sentence_transformers import SentenceTransformer

    base = SentenceTransformer(str(base_path), device="cpu", local_files_only=True)
    if variant == "dense":
        return base
    from services.router.moe_embedder import MoETransformer

    encoder = MoETransformer.load(
        str(base_path),
        local_files_only=True,
        init_defaults={"moe_layers": list(args.moe_layers), "categories": list(taxonomy)},
    )
    return SentenceTransformer(modules=[encoder, *list(base.children())[1:]], device="cpu")


def build_loss(model: Any, variant: Variant, args: EmbedderTrainingArgs) -> Any:
    if variant == "dense":
        from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

        return MultipleNegativesRankingLoss(model, scale=args.scale)
    from router_training.embedder.losses import MoEContrastiveLoss

    return MoEContrastiveLoss(model, gate_loss_weight=args.gate_loss_weight, scale=args.scale)


@contextmanager
def flush_denormals() -> Iterator[None]:
    """Treat subnormal floats as zero while training.

    Once the experts separate the categories, the ranking loss nears zero and the backward pass
    fills with subnormal numbers, which x86 CPUs process up to ~100× slower: measured, 10 MoE
    steps took 103 s with them and 6.7 s without. Flushing them changes values below 1e-38 only.
    """
    import torch

    torch.set_flush_denormal(True)
    try:
        yield
    finally:
        torch.set_flush_denormal(False)  # torch's default; it has no getter to restore from


def _last_logged(history: list[dict[str, Any]], keys: tuple[str, ...]) -> dict[str, float]:
    """The most recent logged value of each key (the trainer logs loss components separately)."""
    found: dict[str, float] = {}
    for entry in reversed(history):
        for key in keys:
            if key in entry and key not in found:
                found[key] = float(entry[key])
    return found


def train_embedder(
    base: EmbedderSource,
    taxonomy: tuple[str, ...],
    train: list[Example],
    out_dir: Path,
    variant: Variant,
    args: EmbedderTrainingArgs = EmbedderTrainingArgs(),
    key: bytes | None = None,
) -> Path:
    """Fine-tune ``base`` on ``train`` and write the model directory ``out_dir``; returns it.

    The directory loads with ``SentenceTransformer(path)`` (dense) or
    ``services.router.moe_embedder.load_moe_embedder(path)`` (moe) and carries ``manifest.json``,
    signed when ``key`` (the artifact signing key) is given.
    """
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}; got {variant!r}")
    if len(taxonomy) < 2 or len(set(taxonomy)) != len(taxonomy):
        raise ValueError(f"taxonomy must name at least two distinct categories; got {list(taxonomy)}")
    force_offline()
    from sentence_transformers import SentenceTransformerTrainer, SentenceTransformerTrainingArguments
    from sentence_transformers.sentence_transformer.data_collator import SentenceTransformerDataCollator

    # Out-of-scope prompts (chit-chat) form one more group, so they gather apart from every category.
    labels = taxonomy + ((OUT_OF_SCOPE,) if any(not example.in_scope for example in train) else ())
    pairs = category_pairs(train, labels, seed=args.seed)
    base_path = locate_embedder(base)
    model = build_model(base_path, variant, labels, args)
    loss = build_loss(model, variant, args)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="embedder-trainer-") as scratch:
        training_args = SentenceTransformerTrainingArguments(
            output_dir=scratch,
            num_train_epochs=args.epochs,
            max_steps=args.max_steps if args.max_steps is not None else -1,
            per_device_train_batch_size=len(labels),  # one pair per category per batch
            batch_sampler=OnePairPerCategoryBatchSampler,
            learning_rate=args.learning_rate,
            learning_rate_mapping={GATE_PARAMETERS: args.gate_learning_rate} if variant == "moe" else {},
            warmup_steps=args.warmup_ratio,  # a float below 1 is a ratio of the total steps
            logging_steps=min(10, args.max_steps or 10),
            save_strategy="no",
            report_to="none",
            use_cpu=True,
            seed=args.seed,
            data_seed=args.seed,
        )
        trainer = SentenceTransformerTrainer(
            model=model,
            args=training_args,
            train_dataset=pairs,
            loss=loss,
            data_collator=SentenceTransformerDataCollator(preprocess_fn=model.preprocess, max_length=args.max_seq_length),
        )
        with flush_denormals():
            result = trainer.train()
        history = trainer.state.log_history
    seconds = time.perf_counter() - started
    metrics = {
        "train_loss": float(result.training_loss),
        "train_seconds": round(seconds, 1),
        "steps": int(result.global_step),
        "pairs": len(pairs),
        "final_logged": _last_logged(history, ("loss", "ranking", "gate")),
    }
    logger.info("trained the %s embedder in %.0f s (%d steps)", variant, seconds, result.global_step)
    training = {
        **asdict(args),
        "variant": variant,
        "taxonomy": list(labels),  # label i is labels[i]; also the MoE gate's output order
        "batch_size": len(labels),
        "loss": type(loss).__name__,
    }
    return _write_artifact(model, out_dir, base, train, variant, training, metrics, key)


def _write_artifact(
    model: Any,
    out_dir: Path,
    base: EmbedderSource,
    train: list[Example],
    variant: Variant,
    training: dict[str, Any],
    metrics: dict[str, Any],
    key: bytes | None,
) -> Path:
    model.eval()
    with artifact_directory(Path(out_dir)) as staging:
        model.save(str(staging), create_model_card=False)
        names = [str(path.relative_to(staging)) for path in sorted(staging.rglob("*")) if path.is_file()]
        manifest = ArtifactManifest(
            kind="embedder",
            name=f"router-embedder-{variant}",
            version=new_version(),
            base=base.reference,
            files=hash_files(staging, names),
            data={"train": {"examples": len(train), "sha256": data_fingerprint(train)}},
            training=training,
            metrics=metrics,
        )
        write_manifest(staging, manifest, key)
    return Path(out_dir).resolve()

