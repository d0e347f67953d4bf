"""The DMoERM network: one encoder, a value head, capability adapters and per-category aggregators.

This is the only implementation of the model's forward pass; the training job and the runtime
scorer both import it.

- **Encoder**: a BERT-style sentence encoder (all-MiniLM-L6-v2) reads the (prompt, response)
  pair as one sequence (``[CLS] prompt [SEP] response [SEP]``) and its token states are
  **mean-pooled** over the attention mask. Mean pooling is what MiniLM was trained with as a
  sentence encoder, so the pooled vector is meaningful before any fine-tuning; its ``[CLS]``
  state was never trained as a summary.
- **Phase-1 value head** ``Linear(H, 1)`` on the pooled state with every adapter disabled; it
  doubles as the single-head baseline.
- **Capability adapters**: one named PEFT LoRA adapter per capability in one ``PeftModel``,
  each with its own value head ``Linear(H, 1)``. The active adapter is switched between
  forward passes, never inside one.
- **Aggregators** (one per category with enough data, plus ``global``): the K pooled states
  ``z_k`` are concatenated, ``Linear(K·H, H) → PReLU → Linear(H, 1)``.

WordPiece drops whitespace, so a response whose line breaks were removed would tokenise
exactly like the original; :func:`visible_layout` turns each line break into a ``¶`` token.
"""

from __future__ import annotations

import contextlib
from typing import Any, Iterator, Sequence

import torch
from torch import nn

from services.rewards.spec import GLOBAL_GROUP, RewardModelSpec
from services.rewards.truncation import fit_prompts, visible_layout


def encode_pairs(tokenizer: Any, prompts: Sequence[str], responses: Sequence[str], max_length: int) -> dict[str, torch.Tensor]:
    """Tokenise (prompt, response) pairs as BERT sentence pairs, padded to the longest.

    Prompts are expected already fitted (:func:`services.rewards.truncation.fit_prompts`, which
    drops the oldest turns); ``longest_first`` is the backstop that cuts a response longer than
    the window at its end.
    """
    return tokenizer(
        [visible_layout(text) for text in prompts],
        [visible_layout(text) for text in responses],
        truncation="longest_first",
        max_length=max_length,
        padding=True,
        return_tensors="pt",
    )


def mean_pool(hidden: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Average of the token states that are not padding."""
    weights = mask.unsqueeze(-1).to(hidden.dtype)  # (B, T, 1)
    return (hidden * weights).sum(dim=1) / weights.sum(dim=1).clamp(min=1.0)  # (B, H)


class Aggregator(nn.Module):
    """``Linear(K·H, H) → PReLU → Linear(H, 1)`` over the concatenated capability states."""

    def __init__(self, n_capabilities: int, hidden_size: int) -> None:
        super().__init__()
        self.n_capabilities = n_capabilities
        self.hidden_size = hidden_size
        self.layers = nn.Sequential(
            nn.Linear(n_capabilities * hidden_size, hidden_size), nn.PReLU(), nn.Linear(hidden_size, 1)
        )

    def forward(self, states: torch.Tensor) -> torch.Tensor:
        return self.layers(states.flatten(1)).squeeze(-1)  # (B, K, H) -> (B,)

    @torch.no_grad()
    def start_as_mean_of(self, heads: Sequence[nn.Linear]) -> None:
        """Initialise so the output equals the mean of the capability heads' rewards.

        Rows 0..K-1 of the first layer copy head k's weights on block k (zero elsewhere), PReLU
        starts as the identity (slope 1) and the last layer averages those K rows. Training then
        moves away from this sensible starting point rather than from noise, which matters for
        categories with only a few dozen pairs.
        """
        k, h = self.n_capabilities, self.hidden_size
        if len(heads) != k or h < k:
            raise ValueError(f"need {k} heads and hidden size >= {k} to start as their mean")
        first, prelu, last = self.layers
        first.weight.zero_()
        first.bias.zero_()
        for index, head in enumerate(heads):
            first.weight[index, index * h : (index + 1) * h] = head.weight[0]
            first.bias[index] = head.bias[0]
        prelu.weight.fill_(1.0)
        last.weight.zero_()
        last.weight[0, :k] = 1.0 / k
        last.bias.zero_()


class RewardNetwork(nn.Module):
    """The whole model. ``encoder`` is a plain BERT model; adapters are attached here."""

    def __init__(self, encoder: nn.Module, spec: RewardModelSpec) -> None:
        super().__init__()
        from peft import LoraConfig, get_peft_model

        self.spec = spec
        hidden = spec.hidden_size
        lora = LoraConfig(
            r=spec.lora.r,
            lora_alpha=spec.lora.alpha,
            lora_dropout=spec.lora.dropout,
            target_modules=list(spec.lora.target_modules),
            bias="none",
        )
        self.encoder = encoder
        if spec.capabilities:
            first, *rest = spec.capabilities
            self.encoder = get_peft_model(encoder, lora, adapter_name=first)
            for name in rest:
                self.encoder.add_adapter(name, lora)
        self.value_head = nn.Linear(hidden, 1)
        self.capability_heads = nn.ModuleDict({name: nn.Linear(hidden, 1) for name in spec.capabilities})
        self.aggregators = nn.ModuleDict(
            {name: Aggregator(len(spec.state_sources), hidden) for name in spec.aggregators}
        )

    @contextlib.contextmanager
    def adapter(self, name: str | None) -> Iterator[None]:
        """Run the encoder with one capability adapter, or with none (``None``: the phase-1 model)."""
        if name is None:
            if not self.spec.capabilities:  # a plain encoder: nothing to disable
                yield
                return
            with self.encoder.disable_adapter():
                yield
            return
        if name not in self.capability_heads:
            raise ValueError(f"unknown capability adapter {name!r}; the model has {list(self.capability_heads)}")
        if self.encoder.active_adapter != name:
            self.encoder.set_adapter(name)
        yield

    def pooled(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        """Pooled encoder state with whatever adapter is active: ``(B, H)``."""
        hidden = self.encoder(
            input_ids=batch["input_ids"],
            attention_mask=batch["attention_mask"],
            token_type_ids=batch.get("token_type_ids"),
        ).last_hidden_state  # (B, T, H)
        return mean_pool(hidden, batch["attention_mask"])

    def capability_rewards(self, states: torch.Tensor) -> torch.Tensor:
        """Each capability head on its own adapter's state: ``(B, K, H) -> (B, K)``."""
        if not self.spec.capabilities:
            return states.new_zeros(states.shape[0], 0)
        columns = [self.capability_heads[name](states[:, index]) for index, name in enumerate(self.spec.capabilities)]
        return torch.cat(columns, dim=1)

    def aggregate(self, states: torch.Tensor, groups: Sequence[str]) -> torch.Tensor:
        """Final reward of each row with its group's aggregator: ``(B, K, H) -> (B,)``."""
        reward = states.new_zeros(states.shape[0])
        for group in sorted(set(groups)):
            rows = torch.tensor([index for index, name in enumerate(groups) if name == group], dtype=torch.long)
            aggregator = self.aggregators[group] if group in self.aggregators else self.aggregators[GLOBAL_GROUP]
            reward[rows] = aggregator(states[rows])
        return reward


@torch.no_grad()
def pooled_states(
    network: RewardNetwork,
    tokenizer: Any,
    prompts: Sequence[str],
    responses: Sequence[str],
    adapters: Sequence[str | None],
    *,
    batch_size: int = 32,
) -> torch.Tensor:
    """Pooled states of every pair under each adapter: ``(N, len(adapters), H)``.

    Adapters are the outer loop, so the active adapter changes once per adapter, not per
    batch. Each prompt is fitted to the window once against all of its responses, so they are
    all read with the same context. Repeated (prompt, response) pairs are encoded once
    (preference files repeat the chosen answer in every pair of a prompt), and pairs are sorted
    by length so each batch pads little.
    """
    if len(prompts) != len(responses):
        raise ValueError(f"{len(prompts)} prompts but {len(responses)} responses")
    fitted = [fit.text for fit in fit_prompts(tokenizer, prompts, responses, network.spec.max_length)]
    keys = list(zip(fitted, responses))
    unique = list(dict.fromkeys(keys))
    position = {key: index for index, key in enumerate(unique)}
    order = sorted(range(len(unique)), key=lambda index: len(unique[index][0]) + len(unique[index][1]))
    states = torch.zeros(len(unique), len(adapters), network.spec.hidden_size)
    was_training = network.training
    network.eval()
    try:
        for column, name in enumerate(adapters):
            with network.adapter(name):
                for start in range(0, len(order), batch_size):
                    rows = order[start : start + batch_size]
                    batch = encode_pairs(
                        tokenizer, [unique[i][0] for i in rows], [unique[i][1] for i in rows], network.spec.max_length
                    )
                    states[torch.tensor(rows), column] = network.pooled(batch)
    finally:
        network.train(was_training)
    return states[torch.tensor([position[key] for key in keys], dtype=torch.long)]
