"""Training pairs for the contrastive embedder, and the batch order that keeps them honest.

A pair is (anchor, positive): the routing texts of two different prompts of one category, built
with the serving code (``routing_text``) so the embedder learns on exactly what it will embed. The
category index travels as the ``label`` column: the batch sampler groups by it, and the MoE loss
routes and supervises the gate with it.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
from collections import defaultdict
from collections.abc import Iterator
from typing import Any

import torch
from datasets import Dataset
from sentence_transformers.base.sampler import DefaultBatchSampler

from router_training.router.data import DataError, Example
from services.router.config import ContextPolicy
from services.router.routing_input import routing_text

PAIR_COLUMNS = ("anchor", "positive", "label")


def routing_texts(examples: list[Example], policy: ContextPolicy = ContextPolicy()) -> list[str]:
    """What the router embeds for each example."""
    return [routing_text(example.messages, policy)[0] for example in examples]


def category_pairs(
    train: list[Example], taxonomy: tuple[str, ...], seed: int = 0, policy: ContextPolicy = ContextPolicy()
) -> Dataset:
    """One row per training prompt: it is the anchor, and a different prompt of its category,
    drawn at random, is the positive. Columns: ``anchor``, ``positive``, ``label`` (taxonomy index).

    Every taxonomy category needs at least two distinct prompts: with fewer there is no positive,
    and under the MoE variant its expert and gate output would never be trained.
    """
    texts = routing_texts(train, policy)
    by_category: dict[str, list[str]] = defaultdict(list)
    for example, text in zip(train, texts):
        if example.category not in taxonomy:
            raise DataError(f"training example of category {example.category!r}, which is not in the taxonomy {list(taxonomy)}")
        by_category[example.category].append(text)
    short = sorted(category for category in taxonomy if len(set(by_category[category])) < 2)
    if short:
        raise DataError(f"categories {short} have fewer than two distinct training prompts; add prompts to the train split")
    rng = random.Random(seed)
    rows: dict[str, list[Any]] = {column: [] for column in PAIR_COLUMNS}
    for example, text in zip(train, texts):
        candidates = by_category[example.category]
        positive = text
        while positive == text:
            positive = candidates[rng.randrange(len(candidates))]
        rows["anchor"].append(text)
        rows["positive"].append(positive)
        rows["label"].append(taxonomy.index(example.category))
    return Dataset.from_dict(rows)


def data_fingerprint(train: list[Example]) -> str:
    """sha256 of the training examples (messages and category), for the artifact's manifest."""
    digest = hashlib.sha256()
    for example in train:
        digest.update(json.dumps([list(example.messages), example.category], sort_keys=True).encode("utf-8"))
    return digest.hexdigest()


class OnePairPerCategoryBatchSampler(DefaultBatchSampler):
    """Batches that hold at most one pair per category.

    MultipleNegativesRankingLoss treats every other positive in the batch as a negative for an
    anchor. Were two pairs of one category in a batch, the loss would push apart two prompts that
    we want close: a false negative. So each batch takes ``batch_size`` distinct categories (all of
    them when ``batch_size`` equals the number of categories, which is how the trainer is set up)
    and one pair from each. Every negative is then of another category, and categories are
    balanced per batch whatever their share of the data.

    Each category's rows are visited in a fresh random order every epoch; a category that runs
    out before the epoch ends starts another shuffled pass, so smaller categories repeat a little
    and larger ones leave a few pairs for the next epoch. An epoch has ``ceil(rows / batch_size)``
    batches, so an epoch is still about one pass over the data; the batches are always full, so
    ``drop_last`` changes nothing.
    """

    def __init__(
        self,
        dataset: Dataset,
        batch_size: int,
        drop_last: bool,
        valid_label_columns: list[str] | None = None,
        generator: torch.Generator | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(
            dataset,
            batch_size=batch_size,
            drop_last=drop_last,
            valid_label_columns=valid_label_columns,
            generator=generator,
            seed=seed,
        )
        column = next((name for name in valid_label_columns or [] if name in dataset.column_names), None)
        if column is None:
            raise ValueError(
                f"OnePairPerCategoryBatchSampler groups rows by category, but the dataset has none of the label "
                f"columns {valid_label_columns}; add a 'label' column (see category_pairs)"
            )
        groups: dict[Any, list[int]] = defaultdict(list)
        for index, label in enumerate(dataset[column]):
            groups[label].append(index)
        self.groups = [groups[label] for label in sorted(groups)]
        if batch_size > len(self.groups):
            raise ValueError(
                f"batch_size={batch_size} is larger than the {len(self.groups)} categories in the dataset, and a batch "
                f"holds at most one pair per category; set per_device_train_batch_size to at most {len(self.groups)}"
            )
        self.num_rows = len(dataset)

    def __len__(self) -> int:
        return math.ceil(self.num_rows / self.batch_size)

    def __iter__(self) -> Iterator[list[int]]:
        generator = self.generator if self.generator is not None else torch.Generator()
        generator.manual_seed(self.seed + self.epoch)
        queues: list[list[int]] = [[] for _ in self.groups]

        def next_row(group: int) -> int:
            if not queues[group]:
                indices = self.groups[group]
                queues[group] = [indices[i] for i in torch.randperm(len(indices), generator=generator).tolist()]
            return queues[group].pop()

        for _ in range(len(self)):
            chosen = torch.randperm(len(self.groups), generator=generator)[: self.batch_size].tolist()
            yield [next_row(group) for group in chosen]
