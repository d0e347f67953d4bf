"""Train a style LoRA adapter on SmolLM2 with PEFT, in minutes on CPU.

The loss covers only the assistant's answer (prompt tokens are masked), the prompt is rendered
with the same chat template the server uses, and the result is judged by whether greedy answers
to held-out instructions follow the adapter's format, with the base model as the comparison.
"""

from __future__ import annotations

import json
import logging
import random
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from services.artifacts import (
    ArtifactManifest,
    artifact_directory,
    file_sha256,
    hash_files,
    new_version,
    write_manifest,
)
from services.experts.config import LocalBaseExpert, LoRAExpert
from services.experts.loading import load_model
from router_training.adapters.recipes import AdapterRecipe

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class LoRATrainingArgs:
    epochs: int = 2
    batch_size: int = 8
    learning_rate: float = 1e-3
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.05
    target_modules: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj")
    holdout: int = 24
    eval_max_new_tokens: int = 96
    seed: int = 0


def read_pairs(path: Path) -> list[dict[str, str]]:
    pairs = []
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, 1):
            if line.strip():
                row = json.loads(line)
                if not isinstance(row.get("instruction"), str) or not isinstance(row.get("response"), str):
                    raise ValueError(f"{path}:{number}: each line needs string 'instruction' and 'response'")
                pairs.append(row)
    return pairs


def split_pairs(recipe: AdapterRecipe, seed: int, holdout: int) -> tuple[list[dict[str, str]], list[dict[str, str]]]:
    """(held out, training): the held-out instructions judge the adapter's format, on any engine."""
    pairs = read_pairs(recipe.data_path)
    random.Random(seed).shuffle(pairs)
    return pairs[:holdout], pairs[holdout:]


def _prompt(tokenizer: Any, instruction: str) -> str:
    return tokenizer.apply_chat_template(
        [{"role": "user", "content": instruction}], add_generation_prompt=True, tokenize=False
    )


def _encode(tokenizer: Any, pair: dict[str, str]) -> tuple[list[int], list[int]]:
    """Token ids and labels; labels are -100 over the prompt so only the answer is learned."""
    prompt_ids = tokenizer(_prompt(tokenizer, pair["instruction"]), add_special_tokens=False)["input_ids"]
    answer_ids = tokenizer(pair["response"] + tokenizer.eos_token, add_special_tokens=False)["input_ids"]
    return prompt_ids + answer_ids, [-100] * len(prompt_ids) + answer_ids


def _collate(tokenizer: Any, batch: list[tuple[list[int], list[int]]]) -> dict[str, Any]:
    import torch

    width = max(len(ids) for ids, _ in batch)
    pad = tokenizer.pad_token_id
    input_ids = torch.full((len(batch), width), pad, dtype=torch.long)  # (batch, seq)
    labels = torch.full((len(batch), width), -100, dtype=torch.long)
    attention = torch.zeros((len(batch), width), dtype=torch.long)
    for row, (ids, row_labels) in enumerate(batch):
        input_ids[row, : len(ids)] = torch.tensor(ids)
        labels[row, : len(ids)] = torch.tensor(row_labels)
        attention[row, : len(ids)] = 1
    return {"input_ids": input_ids, "labels": labels, "attention_mask": attention}


def _format_rate(model: Any, tokenizer: Any, recipe: AdapterRecipe, instructions: list[str], max_new_tokens: int) -> float:
    import torch

    tokenizer.padding_side = "left"
    prompts = [_prompt(tokenizer, instruction) for instruction in instructions]
    hits = 0
    for start in range(0, len(prompts), 8):
        encoded = tokenizer(prompts[start : start + 8], return_tensors="pt", padding=True, add_special_tokens=False)
        with torch.inference_mode():
            output = model.generate(**encoded, max_new_tokens=max_new_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
        for row in output[:, encoded["input_ids"].shape[1] :]:
            hits += recipe.follows_format(tokenizer.decode(row, skip_special_tokens=True))
    return hits / max(1, len(prompts))


def train_adapter(
    base: LocalBaseExpert,
    expert: LoRAExpert,
    recipe: AdapterRecipe,
    args: LoRATrainingArgs = LoRATrainingArgs(),
    key: bytes | None = None,
) -> ArtifactManifest:
    """Train, evaluate and atomically write one adapter to ``expert.path``.

    ``key``: the artifact signing key, if configured, for the base model's converted weights."""
    import torch
    from peft import LoraConfig, get_peft_model
    from tqdm.auto import tqdm

    torch.manual_seed(args.seed)
    held_out, training = split_pairs(recipe, args.seed, args.holdout)

    model, tokenizer = load_model(base, key)
    tokenizer.padding_side = "right"
    baseline = _format_rate(model, tokenizer, recipe, [p["instruction"] for p in held_out], args.eval_max_new_tokens)

    lora = LoraConfig(
        r=args.rank,
        lora_alpha=args.alpha,
        lora_dropout=args.dropout,
        target_modules=list(args.target_modules),
        task_type="CAUSAL_LM",
    )
    model = get_peft_model(model, lora)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=args.learning_rate)
    encoded = [_encode(tokenizer, pair) for pair in training]
    steps = args.epochs * ((len(encoded) + args.batch_size - 1) // args.batch_size)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: max(0.0, 1.0 - step / steps))
    rng = random.Random(args.seed)
    losses: list[float] = []
    model.train()
    with tqdm(total=steps, desc=f"training {expert.name}", unit="step") as progress:
        for _ in range(args.epochs):
            rng.shuffle(encoded)
            for start in range(0, len(encoded), args.batch_size):
                batch = _collate(tokenizer, encoded[start : start + args.batch_size])
                loss = model(**batch).loss
                loss.backward()
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad()
                losses.append(float(loss))
                progress.set_postfix(loss=f"{losses[-1]:.3f}")
                progress.update()
    model.eval()
    adapted = _format_rate(model, tokenizer, recipe, [p["instruction"] for p in held_out], args.eval_max_new_tokens)

    model.peft_config["default"].base_model_name_or_path = base.name
    manifest = ArtifactManifest(
        kind="lora-adapter",
        name=expert.name,
        version=new_version(),
        base=base.name,
        data={"file": recipe.data_file, "sha256": file_sha256(recipe.data_path), "examples": len(training), "held_out": len(held_out)},
        training={**asdict(args), "target_modules": list(args.target_modules), "steps": steps},
        metrics={
            "final_loss": sum(losses[-10:]) / max(1, len(losses[-10:])),
            "held_out_format_rate": adapted,
            "base_model_format_rate": baseline,
        },
    )
    with artifact_directory(Path(expert.path)) as staging:
        model.save_pretrained(str(staging), safe_serialization=True)
        (staging / "README.md").unlink(missing_ok=True)  # PEFT's blank model card; the manifest says it all
        manifest.files = hash_files(staging, ["adapter_config.json", "adapter_model.safetensors"])
        write_manifest(staging, manifest)
    logger.info("adapter %s: format rate %.2f (base model %.2f)", expert.name, adapted, baseline)
    return manifest
