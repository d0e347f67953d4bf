"""The mixture-of-experts sentence embedder: a BERT encoder whose chosen feed-forward blocks are
replicated into one expert per category, and a sentence-level gate that picks the expert.

Layout. In each MoE layer the feed-forward block (``intermediate`` + ``output``: the FFN with its
residual and LayerNorm, as BERT applies it) becomes N experts, each initialised as a copy of the
pretrained block, so a freshly built model embeds exactly like the dense one it came from. The
first MoE layer also holds the gate: the hidden state entering that layer's experts, mean-pooled
over real tokens, → ``Linear(hidden, N)``. Every token of a sentence goes to one expert.

Routing. Training passes the known category (``features["category_ids"]``) and every MoE layer
uses that category's expert; the gate is trained alongside with cross-entropy against the same
category. At inference the category is unknown: the gate decides once, top-1 and hard, at the
first MoE layer, and all MoE layers use that expert, as in training. Its softmax is itself a
category prediction (:func:`gate_probabilities`).

Files. The directory is a standard sentence-transformers model whose first module is
:class:`MoETransformer`: ``config.json`` (the encoder's Hugging Face config), ``model.safetensors``
(all encoder weights, experts and gate included), the tokenizer files, and
``sentence_bert_config.json`` with ``moe_layers`` and ``categories`` (the gate's taxonomy order).
sentence-transformers ≥ 6 imports a module class from outside its own namespace only when asked
with ``trust_remote_code=True``, for local directories too, and this project never asks:
:func:`load_moe_embedder` hands sentence-transformers this (already imported) class for the one
reference it allows, so nothing named by the directory is imported.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from copy import deepcopy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_model as load_safetensors_model
from safetensors.torch import save_model as save_safetensors_model
from sentence_transformers import SentenceTransformer
from sentence_transformers.base.modules.transformer import Transformer
from torch import Tensor, nn

from services.custom_code import refuse_custom_code

CATEGORY_IDS = "category_ids"  # features key: (batch,) long, the enforced route while training
GATE_LOGITS = "gate_logits"  # features key: (batch, n_categories), written by every forward
MODULE_CONFIG = "sentence_bert_config.json"
WEIGHTS = "model.safetensors"


class _RoutingState:
    """Scratch space shared by the MoE layers of one encoder during one forward pass.

    The Hugging Face layer calls its feed-forward block with the hidden states only, so the
    attention mask (for the gate's pooling), the route and the gate's logits travel here. It is
    thread-local, so concurrent forwards on one model do not see each other's routes.
    """

    def __init__(self) -> None:
        self._local = threading.local()

    def __deepcopy__(self, memo: dict[int, Any]) -> _RoutingState:
        return _RoutingState()

    @contextmanager
    def scope(self, attention_mask: Tensor | None, route: Tensor | None) -> Iterator[None]:
        self._local.attention_mask = attention_mask
        self._local.route = route
        self._local.gate_logits = None
        try:
            yield
        finally:
            self._local.attention_mask = self._local.route = self._local.gate_logits = None

    @property
    def attention_mask(self) -> Tensor | None:
        return getattr(self._local, "attention_mask", None)

    @property
    def route(self) -> Tensor | None:
        return getattr(self._local, "route", None)

    @route.setter
    def route(self, value: Tensor) -> None:
        self._local.route = value

    @property
    def gate_logits(self) -> Tensor | None:
        return getattr(self._local, "gate_logits", None)

    @gate_logits.setter
    def gate_logits(self, value: Tensor) -> None:
        self._local.gate_logits = value


class ExpertFeedForward(nn.Module):
    """One expert: BERT's feed-forward block, ``LayerNorm(x + dropout(W2·act(W1·x)))``."""

    def __init__(self, intermediate: nn.Module, output: nn.Module) -> None:
        super().__init__()
        self.intermediate = intermediate
        self.output = output

    def forward(self, hidden: Tensor) -> Tensor:  # (rows, seq, hidden) -> (rows, seq, hidden)
        return self.output(self.intermediate(hidden), hidden)


class MixtureOfFeedForwards(nn.Module):
    """Stands in for a layer's ``intermediate``: runs the whole expert block (residual and
    LayerNorm included) for each sentence's expert; the layer's ``output`` becomes a pass-through.
    """

    def __init__(self, experts: list[ExpertFeedForward], gate: nn.Linear | None, state: _RoutingState) -> None:
        super().__init__()
        self.experts = nn.ModuleList(experts)
        self.gate = gate
        self._state = state

    def forward(self, hidden: Tensor) -> Tensor:  # (batch, seq, hidden) -> (batch, seq, hidden)
        state = self._state
        if self.gate is not None:
            mask = state.attention_mask
            weights = (mask if mask is not None else hidden.new_ones(hidden.shape[:2])).unsqueeze(-1).to(hidden.dtype)
            pooled = (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (batch, hidden)
            logits = self.gate(pooled)  # (batch, n_experts)
            state.gate_logits = logits
            if state.route is None:
                state.route = logits.argmax(dim=-1)  # (batch,) top-1, hard
        route = state.route
        if route is None:
            raise RuntimeError("an MoE layer ran without a route: the gate sits in the first MoE layer")
        order = torch.argsort(route, stable=True)  # (batch,) rows grouped by expert
        counts = torch.bincount(route, minlength=len(self.experts)).tolist()
        groups = hidden[order].split(counts)  # per expert: (rows_e, seq, hidden)
        outputs = [expert(group) for expert, group in zip(self.experts, groups) if group.shape[0]]
        return torch.cat(outputs)[torch.argsort(order)]  # back to the batch order


class FeedForwardDone(nn.Module):
    """Stands in for a layer's ``output``: :class:`MixtureOfFeedForwards` already applied it."""

    def forward(self, hidden: Tensor, input_tensor: Tensor) -> Tensor:
        return hidden


def _holds_moe_weights(model_name_or_path: str) -> bool:
    """Whether a directory was saved by :class:`MoETransformer` (its weights include experts)."""
    config = Path(model_name_or_path) / MODULE_CONFIG
    return config.is_file() and "moe_layers" in json.loads(config.read_text(encoding="utf-8"))


class MoETransformer(Transformer):
    """sentence-transformers ``Transformer`` module with mixture-of-experts feed-forward layers.

    Built from a dense sentence-transformers directory, each MoE layer's experts start as copies
    of its pretrained block; loaded from a directory this class saved, every weight comes from
    that directory's ``model.safetensors``.

    Args:
        model_name_or_path: a local sentence-transformers (or Hugging Face BERT-style) directory.
        moe_layers: encoder layer indices whose feed-forward block becomes a mixture.
        categories: the taxonomy, in the gate's output order; one expert per category.
        **kwargs: passed to :class:`~sentence_transformers.base.modules.transformer.Transformer`.
    """

    config_keys: list[str] = [*Transformer.config_keys, "moe_layers", "categories"]

    def __init__(
        self, model_name_or_path: str, *, moe_layers: Sequence[int], categories: Sequence[str], **kwargs: Any
    ) -> None:
        kwargs.setdefault("unpad_inputs", False)  # the gate pools padded (batch, seq, hidden) states
        super().__init__(model_name_or_path, **kwargs)
        self.moe_layers = tuple(sorted({int(index) for index in moe_layers}))
        self.categories = tuple(categories)
        self._routing = _RoutingState()
        self._install_experts()
        if _holds_moe_weights(model_name_or_path):
            self._load_saved_weights(Path(model_name_or_path) / WEIGHTS)

    def _load_model(
        self, model_name_or_path: str, transformer_task: Any, config: Any, backend: str, is_peft_model: bool, **model_kwargs: Any
    ) -> Any:
        """A saved MoE directory's weights do not fit the plain architecture: build the encoder
        empty here and fill it, experts included, once the experts exist."""
        if not _holds_moe_weights(model_name_or_path):
            return super()._load_model(model_name_or_path, transformer_task, config, backend, is_peft_model, **model_kwargs)
        if backend != "torch" or transformer_task != "feature-extraction":
            raise ValueError(
                f"MoETransformer runs with backend='torch' and transformer_task='feature-extraction', "
                f"not {backend!r}/{transformer_task!r}; load the directory without overriding them"
            )
        from transformers import AutoModel

        return AutoModel.from_config(config)

    def _install_experts(self) -> None:
        layers = getattr(getattr(self.model, "encoder", None), "layer", None)
        if layers is None:
            raise ValueError(f"MoETransformer needs a BERT-style encoder (model.encoder.layer); got {type(self.model).__name__}")
        if len(self.categories) < 2 or len(set(self.categories)) != len(self.categories):
            raise ValueError(f"categories must name at least two distinct categories; got {list(self.categories)}")
        if not self.moe_layers or not all(0 <= index < len(layers) for index in self.moe_layers):
            raise ValueError(
                f"moe_layers {list(self.moe_layers)} must be a non-empty set of layer indices in 0..{len(layers) - 1} "
                f"(this encoder has {len(layers)} layers)"
            )
        for position, index in enumerate(self.moe_layers):
            layer = layers[index]
            if getattr(layer, "chunk_size_feed_forward", 0):
                raise ValueError(
                    f"layer {index} chunks its feed-forward over the sequence, which would split the gate's "
                    "pooling; set chunk_size_feed_forward=0 in the encoder config"
                )
            if not isinstance(getattr(layer, "intermediate", None), nn.Module) or not isinstance(getattr(layer, "output", None), nn.Module):
                raise ValueError(f"layer {index} has no 'intermediate'/'output' feed-forward pair to replicate")
            experts = [ExpertFeedForward(deepcopy(layer.intermediate), deepcopy(layer.output)) for _ in self.categories]
            gate = None
            if position == 0:
                gate = nn.Linear(self.model.config.hidden_size, len(self.categories))
                nn.init.zeros_(gate.weight)  # uniform until trained: no category preferred
                nn.init.zeros_(gate.bias)
            layer.intermediate = MixtureOfFeedForwards(experts, gate, self._routing)
            layer.output = FeedForwardDone()

    def _load_saved_weights(self, path: Path) -> None:
        try:
            load_safetensors_model(self.model, str(path), strict=True)
        except RuntimeError as exc:
            raise ValueError(
                f"{path} does not match moe_layers={list(self.moe_layers)} and {len(self.categories)} categories "
                f"from {MODULE_CONFIG}; the directory is damaged or was edited: retrain it ({exc})"
            ) from exc
        self.model.eval()

    def forward(self, features: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
        """Adds ``features["gate_logits"]`` (batch, n_categories). With ``features["category_ids"]``
        (batch,) every sentence goes to that category's expert; without, the gate routes."""
        route = features.pop(CATEGORY_IDS, None)
        if route is not None:
            route = torch.as_tensor(route, dtype=torch.long, device=features["input_ids"].device)
            if route.ndim != 1 or route.numel() != features["input_ids"].shape[0]:
                raise ValueError(f"features['{CATEGORY_IDS}'] must hold one category index per sentence, shape (batch,)")
            if int(route.min()) < 0 or int(route.max()) >= len(self.categories):
                raise ValueError(f"features['{CATEGORY_IDS}'] must lie in 0..{len(self.categories) - 1} (indices into categories)")
        with self._routing.scope(features.get("attention_mask"), route):
            features = super().forward(features, **kwargs)
            features[GATE_LOGITS] = self._routing.gate_logits
        return features

    def save(self, output_path: str, *args: Any, safe_serialization: bool = True, **kwargs: Any) -> None:
        """config.json, model.safetensors (all weights), tokenizer files and the module config."""
        if not safe_serialization:
            raise ValueError("MoETransformer saves safetensors only; call save(..., safe_serialization=True)")
        self.model.config.save_pretrained(output_path)
        save_safetensors_model(self.model, os.path.join(output_path, WEIGHTS), metadata={"format": "pt"})
        self.processor.save_pretrained(output_path)
        self.save_config(output_path)

    def get_config_dict(self) -> dict[str, Any]:
        config = super().get_config_dict()
        config["moe_layers"] = list(self.moe_layers)
        config["categories"] = list(self.categories)
        return config

    def __repr__(self) -> str:
        return f"MoETransformer({dict(self.get_config_dict(), architecture=self.model.__class__.__name__)})"


CLASS_REFERENCE = f"{MoETransformer.__module__}.{MoETransformer.__name__}"


def is_moe_embedder(path: Path) -> bool:
    """Whether the sentence-transformers directory at ``path`` holds an MoE embedder."""
    modules = Path(path) / "modules.json"
    return modules.is_file() and any(entry.get("type") == CLASS_REFERENCE for entry in json.loads(modules.read_text("utf-8")))


def load_moe_embedder(path: Path, device: str = "cpu") -> SentenceTransformer:
    """Load an MoE embedder directory, running no code besides this module's and sentence-transformers'.

    ``modules.json`` may name sentence-transformers modules and :class:`MoETransformer` only; the
    latter is resolved to this class directly (sentence-transformers' ``_load_with_module_classes``,
    which its own trainer uses to reload checkpoints), so ``trust_remote_code`` stays off. No
    config in the directory may name custom code (``auto_map``).
    """
    path = Path(path)
    modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    foreign = [entry["type"] for entry in modules if not entry["type"].startswith("sentence_transformers.") and entry["type"] != CLASS_REFERENCE]
    if foreign or not is_moe_embedder(path):
        raise ValueError(f"{path} is not an MoE embedder directory: modules.json must name {CLASS_REFERENCE}, and only it besides sentence_transformers modules (found {foreign or 'no MoE module'})")
    refuse_custom_code(path)
    load = getattr(SentenceTransformer, "_load_with_module_classes", None)
    if load is None:
        raise RuntimeError(
            "this sentence-transformers cannot be given a module class without trust_remote_code "
            "(SentenceTransformer._load_with_module_classes is missing); install sentence-transformers>=6.2 "
            "to load an MoE embedder"
        )
    return load(str(path), {CLASS_REFERENCE: MoETransformer}, device=device, local_files_only=True)


def moe_module(model: SentenceTransformer) -> MoETransformer:
    """The model's :class:`MoETransformer`, or an error saying the model is a dense one."""
    first = model[0]
    if not isinstance(first, MoETransformer):
        raise ValueError(f"this embedder's first module is {type(first).__name__}, not MoETransformer: it has no gate")
    return first


def gate_categories(model: SentenceTransformer) -> tuple[str, ...]:
    """The taxonomy in the order of the gate's outputs."""
    return moe_module(model).categories


def gate_probabilities(model: SentenceTransformer, texts: list[str], batch_size: int = 8) -> np.ndarray:
    """``(len(texts), n_categories)`` float32 softmax of the gate, columns in :func:`gate_categories` order.

    Texts are embedded in length order, in small batches, as ``SentenceTransformer.encode`` does:
    on CPU, padding short prompts to a long one costs more than batching saves.
    """
    module = moe_module(model)
    if batch_size < 1:
        raise ValueError(f"batch_size must be at least 1; got {batch_size}")
    result = np.zeros((len(texts), len(module.categories)), dtype=np.float32)
    order = np.argsort([-len(text) for text in texts], kind="stable")
    model.eval()
    with torch.inference_mode():
        for start in range(0, len(texts), batch_size):
            rows = order[start : start + batch_size]
            features = model.preprocess([texts[row] for row in rows])
            features = {key: value.to(model.device) if isinstance(value, Tensor) else value for key, value in features.items()}
            logits = model(features)[GATE_LOGITS]  # (rows, n_categories)
            result[rows] = torch.softmax(logits.float(), dim=-1).cpu().numpy()
    return result
