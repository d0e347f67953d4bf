"""The MoE embedder's training loss: in-batch contrastive ranking with enforced expert routing,
plus the gate's cross-entropy against the category (the "specified-expert" loss).

Shaped like a sentence-transformers loss (``forward(sentence_features, labels)``,
``get_config_dict()``), so ``SentenceTransformerTrainer`` drives it; the category arrives as the
``label`` column.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss
from torch import Tensor, nn

from services.router.moe_embedder import CATEGORY_IDS, GATE_LOGITS, moe_module


class MoEContrastiveLoss(nn.Module):
    """``ranking + gate_loss_weight · gate``.

    * ranking: :class:`MultipleNegativesRankingLoss` over (anchor, positive) columns, i.e.
      cross-entropy of ``scale · cos(anchors, positives)`` against the diagonal. Both texts of a
      pair share a category, and every token of each goes to that category's expert.
    * gate: cross-entropy of the gate's logits (computed on the hidden state entering the first
      MoE layer) against the category, over anchors and positives alike.

    The two terms are returned separately, so the trainer logs each.

    Args:
        model: a SentenceTransformer whose first module is ``MoETransformer``.
        gate_loss_weight: weight of the gate's cross-entropy.
        scale: inverse temperature of the ranking loss's cosine logits.
    """

    def __init__(self, model: SentenceTransformer, gate_loss_weight: float = 1.0, scale: float = 20.0) -> None:
        super().__init__()
        moe_module(model)  # fails early, naming the problem, on a dense model
        if gate_loss_weight < 0:
            raise ValueError(f"gate_loss_weight must be >= 0; got {gate_loss_weight}")
        self.model = model
        self.ranking = MultipleNegativesRankingLoss(model, scale=scale)
        self.gate_loss_weight = gate_loss_weight

    def forward(self, sentence_features: Iterable[dict[str, Tensor]], labels: Tensor | None) -> dict[str, Tensor]:
        if labels is None:
            raise ValueError("MoEContrastiveLoss needs each pair's category: give the dataset a 'label' column of taxonomy indices")
        embeddings: list[Tensor] = []
        gate_logits: list[Tensor] = []
        for features in sentence_features:
            output = self.model({**features, CATEGORY_IDS: labels})
            embeddings.append(output["sentence_embedding"])  # (batch, dim)
            gate_logits.append(output[GATE_LOGITS])  # (batch, n_categories)
        ranking = self.ranking.compute_loss_from_embeddings(embeddings, labels)
        logits = torch.cat(gate_logits)  # (columns · batch, n_categories)
        gate = F.cross_entropy(logits, labels.repeat(len(gate_logits)))
        return {"ranking": ranking, "gate": self.gate_loss_weight * gate}

    def get_config_dict(self) -> dict[str, Any]:
        return {"scale": self.ranking.scale, "similarity_fct": "cos_sim", "gate_loss_weight": self.gate_loss_weight}

