"""DriftMoE: an online mixture of Hoeffding trees with a neural router (arXiv 2507.18464).

Re-implemented from the restatement in ``shared/design/papers.md``. Each labelled event is
handled test-then-train:

1. the router (eval mode) scores the E trees, ``w = softmax(logits / T)``;
2. every tree predicts; the prediction served is the top-1 tree's;
3. the multi-hot correctness mask marks the trees that were right (or, when none was, the tree
   that gave the true class the most probability);
4. the features and the mask are buffered, and every ``batch_size`` events the router takes one
   Adam step on ``BCEWithLogits`` with logits recomputed from the buffered features;
5. only the top-k trees by ``w`` learn the event, so trees specialise in the regions the router
   sends them.

Three settings go beyond the paper, for streams far shorter than its million events
(``docs/learner.md``): ``tree_poisson_lambda`` weights each event a tree learns by a Poisson draw
(online bagging, so trees grow sooner and differ); ``tree_drift_delta`` gives every tree an ADWIN
on its own error and resets the tree whose error rose; ``prediction: topk`` serves the
router-weighted vote of the top-k trees instead of the top-1 tree's answer.

Negative feedback without a label (``learn_negative``) trains the router only: it knows which
answer was wrong, not which one would have been right, so the trees have nothing to learn.
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from river import drift, tree
from torch import nn

from services.learner.config import DriftMoESettings
from services.telemetry.metrics import LEARNER_DRIFTS

logger = logging.getLogger(__name__)


class RouterMLP(nn.Module):
    """Scores the trees for one input: ``Linear(d,256) → ReLU → Dropout → Linear(256,128) → ReLU → Linear(128,E)``."""

    def __init__(self, n_features: int, n_trees: int, dropout: float, generator: torch.Generator) -> None:
        super().__init__()
        self.layers = nn.Sequential(
            nn.Linear(n_features, 256),
            nn.ReLU(),
            nn.Dropout(dropout),
            nn.Linear(256, 128),
            nn.ReLU(),
            nn.Linear(128, n_trees),
        )
        for layer in self.layers:
            if isinstance(layer, nn.Linear):
                nn.init.xavier_uniform_(layer.weight, generator=generator)
                nn.init.zeros_(layer.bias)

    def forward(self, features: torch.Tensor) -> torch.Tensor:
        return self.layers(features)  # (batch, d) -> (batch, E)


def correctness_mask(tree_predictions: Sequence[Hashable | None], true_class_probas: Sequence[float], y: Hashable) -> np.ndarray:
    """The router's target: 1 for every tree that predicted ``y``.

    When no tree did, the tree that gave ``y`` the highest probability gets the 1 (the first one
    on a tie), so every event still tells the router which tree was closest.
    """
    mask = np.array([prediction == y for prediction in tree_predictions], dtype=np.float32)  # (E,)
    if not mask.any():
        mask[int(np.argmax(np.asarray(true_class_probas)))] = 1.0
    return mask


@dataclass(frozen=True)
class _Scored:
    """Everything one forward pass over the router and the trees says about an input."""

    vector: np.ndarray  # (d,) float64, as given
    weights: np.ndarray  # (E,) router weights, summing to 1
    tree_probas: list[dict[Hashable, float]]  # E distributions over the known classes
    tree_predictions: list[Hashable | None]  # argmax of each distribution; None before any class is known

    @property
    def top1(self) -> int:
        return int(np.argmax(self.weights))


class DriftMoE:
    """The DriftMoE classifier over dense feature vectors of a fixed dimension.

    ``classes`` fixes the label set (an unknown label is then an error); without it the label
    set grows as labels arrive, in order of first appearance.
    """

    kind = "driftmoe"  # the routing policy's name in configs and checkpoints (learner.policy)

    def __init__(self, n_features: int, settings: DriftMoESettings | None = None, classes: Sequence[Hashable] | None = None) -> None:
        if n_features < 1:
            raise ValueError(f"n_features must be at least 1, got {n_features}")
        self.settings = settings or DriftMoESettings()
        self.n_features = n_features
        self.fixed_classes = classes is not None
        self.classes: list[Hashable] = list(dict.fromkeys(classes or []))
        generator = torch.Generator().manual_seed(self.settings.seed)
        self.router = RouterMLP(n_features, self.settings.n_trees, self.settings.dropout, generator).eval()
        self.optimizer = torch.optim.Adam(self.router.parameters(), lr=self.settings.lr)
        self.trees = [self._new_tree() for _ in range(self.settings.n_trees)]
        self.tree_instances = np.zeros(self.settings.n_trees, dtype=np.int64)  # events each tree has learned
        self.tree_accuracy = np.zeros(self.settings.n_trees)  # running accuracy, picks the tree a drift resets
        self.adwin = drift.ADWIN(delta=self.settings.adwin_delta) if self.settings.use_adwin else None
        self.tree_detectors = self._new_detectors()
        self._bagging = np.random.default_rng(self.settings.seed)
        self.drifts_detected = 0
        self.error_drops_seen = 0  # changes ADWIN flagged where the error fell: not drifts, nothing reset
        self.tree_resets = 0
        self.router_steps = 0
        self.last_router_loss: float | None = None
        self._buffer: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []  # (features, targets, loss mask)
        self._last: _Scored | None = None  # predict_one then learn_one on the same input share one pass

    # ---- inference -------------------------------------------------------------------------

    def predict_one(self, x: np.ndarray) -> Hashable | None:
        """The served prediction (top-1 tree, or the top-k vote); None before any class is known."""
        return self._prediction(self._score(x))

    def predict_proba_one(self, x: np.ndarray) -> dict[Hashable, float]:
        """The served class distribution, so that its argmax is ``predict_one``'s answer."""
        return self._served_probas(self._score(x))

    def router_weights(self, x: np.ndarray) -> np.ndarray:
        """``w = softmax(logits / T)`` over the trees, shape (E,)."""
        return self._score(x).weights.copy()

    def tree_predictions(self, x: np.ndarray) -> list[Hashable | None]:
        """Each tree's own prediction for ``x``: which experts would have been right, for plots and diagnosis.

        Like ``router_weights``, it shares the forward pass of a ``predict_one`` on the same ``x``.
        """
        return list(self._score(x).tree_predictions)

    # ---- learning --------------------------------------------------------------------------

    def learn_one(self, x: np.ndarray, y: Hashable) -> bool:
        """Test, then train on one labelled event; returns whether the prediction before learning was right."""
        self._check_label(y)
        scored = self._score(x)  # before y joins the classes: the prediction is the one a caller would have got
        if y not in self.classes:
            self.classes.append(y)
        correct = self._prediction(scored) == y
        mask = correctness_mask(scored.tree_predictions, [probas.get(y, 0.0) for probas in scored.tree_probas], y)
        self._enqueue(scored.vector, targets=mask, loss_mask=np.ones_like(mask))
        features = self._tree_features(scored.vector)
        for index in self._top_k(scored):
            weight = 1 if self.settings.tree_poisson_lambda is None else int(self._bagging.poisson(self.settings.tree_poisson_lambda))
            if weight:
                self.trees[index].learn_one(features, y, w=weight)
                self.tree_instances[index] += 1
        hits = np.array([prediction == y for prediction in scored.tree_predictions], dtype=np.float64)
        decay = self.settings.accuracy_decay
        self.tree_accuracy = decay * self.tree_accuracy + (1 - decay) * hits
        if self.tree_detectors is not None:
            self._watch_trees(hits)
        self._last = None
        if self.adwin is not None:
            self._watch_error(0.0 if correct else 1.0)
        return correct

    def learn_rewards(self, x: np.ndarray, rewards: Mapping[Hashable, float]) -> bool:
        """A scored comparison (a shadow outcome): the best-scoring label is the event's label.

        Ties go to the label that sorts first, so a replayed comparison teaches the same label.
        """
        return self.learn_one(x, max(sorted(rewards, key=str), key=rewards.__getitem__))

    def learn_negative(self, x: np.ndarray, served_label: Hashable) -> bool:
        """Negative feedback without a label: teach the router to avoid the trees that predicted ``served_label``.

        Those trees get target 0; every other entry is left out of the loss, because a wrong
        answer says nothing about which other tree would have been right. The trees do not
        learn. Returns False when no tree predicted ``served_label`` (nothing to learn).
        """
        self._check_label(served_label)
        scored = self._score(x)
        loss_mask = np.array([prediction == served_label for prediction in scored.tree_predictions], dtype=np.float32)
        if not loss_mask.any():
            return False
        self._enqueue(scored.vector, targets=np.zeros_like(loss_mask), loss_mask=loss_mask)
        return True

    def reset_tree(self, index: int) -> None:
        """Replace tree ``index`` with an empty one, e.g. after a drift made it obsolete."""
        if not 0 <= index < len(self.trees):
            raise ValueError(f"tree index {index} is out of range; the learner has {len(self.trees)} trees")
        self.trees[index] = self._new_tree()
        self.tree_instances[index] = 0
        if self.tree_detectors is not None:
            self.tree_detectors[index] = drift.ADWIN(delta=self.settings.tree_drift_delta)
        # Start from the others' mean: a fresh tree at 0 would be the "worst" again at the next drift.
        others = np.delete(self.tree_accuracy, index)
        self.tree_accuracy[index] = float(others.mean()) if others.size else 0.0
        self.tree_resets += 1
        self._last = None

    # ---- router weights (for safetensors) ----------------------------------------------------

    def router_state(self) -> dict[str, torch.Tensor]:
        """The router's weights as a flat dict of contiguous CPU tensors (``safetensors.torch.save_file`` takes it as is)."""
        return {name: tensor.detach().cpu().clone().contiguous() for name, tensor in self.router.state_dict().items()}

    def load_router_state(self, state: dict[str, torch.Tensor]) -> None:
        """Restore weights saved by ``router_state``; refuses weights of another shape."""
        expected = self.router.state_dict()
        if set(state) != set(expected):
            raise ValueError(f"router state has keys {sorted(state)}, expected {sorted(expected)}")
        for name, tensor in state.items():
            if tuple(tensor.shape) != tuple(expected[name].shape):
                raise ValueError(
                    f"router state {name!r} has shape {tuple(tensor.shape)}, expected {tuple(expected[name].shape)}; "
                    "was it saved by a learner with another n_features or n_trees?"
                )
        self.router.load_state_dict(state)
        self._last = None

    # ---- checkpoint parts --------------------------------------------------------------------

    def tensors(self) -> dict[str, torch.Tensor]:
        """Router weights and Adam's moments as flat named tensors, for safetensors."""
        tensors = {f"router.{name}": tensor for name, tensor in self.router_state().items()}
        for index, state in self.optimizer.state_dict()["state"].items():
            for key, value in state.items():
                tensors[f"adam.{index}.{key}"] = torch.as_tensor(value).detach().cpu().clone().contiguous()
        return tensors

    def river_parts(self) -> dict[str, Any]:
        """The river objects (trees and ADWIN): only pickle saves them, so they go in the signed pickle."""
        return {"trees": self.trees, "adwin": self.adwin, "tree_detectors": self.tree_detectors}

    def plain_state(self) -> dict[str, Any]:
        """Everything else, as JSON: classes, counters, running accuracies and the router's buffer."""
        return {
            "classes": list(self.classes),
            "fixed_classes": self.fixed_classes,
            "tree_instances": self.tree_instances.tolist(),
            "tree_accuracy": self.tree_accuracy.tolist(),
            "drifts_detected": self.drifts_detected,
            "error_drops_seen": self.error_drops_seen,
            "tree_resets": self.tree_resets,
            "router_steps": self.router_steps,
            "last_router_loss": self.last_router_loss,
            "buffer": [[item.tolist() for item in entry] for entry in self._buffer],
        }

    @classmethod
    def restore(
        cls,
        n_features: int,
        settings: DriftMoESettings,
        tensors: dict[str, torch.Tensor],
        river_parts: dict[str, Any],
        plain: dict[str, Any],
    ) -> DriftMoE:
        """Rebuild a learner from the three parts above; shapes and counts are checked."""
        learner = cls(n_features, settings, classes=plain["classes"] if plain["fixed_classes"] else None)
        learner.classes = list(plain["classes"])
        learner.load_router_state({name[len("router."):]: t for name, t in tensors.items() if name.startswith("router.")})
        moments: dict[int, dict[str, torch.Tensor]] = {}
        for name, tensor in tensors.items():
            if name.startswith("adam."):
                _, index, key = name.split(".", 2)
                moments.setdefault(int(index), {})[key] = tensor
        if moments:
            optimizer_state = learner.optimizer.state_dict()
            optimizer_state["state"] = moments
            learner.optimizer.load_state_dict(optimizer_state)
        trees = list(river_parts["trees"])
        if len(trees) != settings.n_trees:
            raise ValueError(f"the checkpoint holds {len(trees)} trees, the settings ask for {settings.n_trees}")
        learner.trees = trees
        learner.adwin = river_parts["adwin"] if settings.use_adwin else None
        if settings.use_adwin and learner.adwin is None:
            learner.adwin = drift.ADWIN(delta=settings.adwin_delta)
        detectors = river_parts.get("tree_detectors")  # absent from checkpoints made before per-tree detectors
        if settings.tree_drift_delta is not None and detectors is not None and len(detectors) == settings.n_trees:
            learner.tree_detectors = list(detectors)
        learner.tree_instances = np.asarray(plain["tree_instances"], dtype=np.int64)
        learner.tree_accuracy = np.asarray(plain["tree_accuracy"], dtype=np.float64)
        for counter in ("drifts_detected", "error_drops_seen", "tree_resets", "router_steps", "last_router_loss"):
            setattr(learner, counter, plain[counter])
        learner._buffer = [
            tuple(np.asarray(part, dtype=np.float32) for part in entry)  # type: ignore[misc]
            for entry in plain["buffer"]
        ]
        return learner

    # ---- internals -------------------------------------------------------------------------

    def _new_detectors(self) -> list[drift.ADWIN] | None:
        delta = self.settings.tree_drift_delta
        return None if delta is None else [drift.ADWIN(delta=delta) for _ in range(self.settings.n_trees)]

    def _top_k(self, scored: _Scored) -> np.ndarray:
        return np.argsort(-scored.weights, kind="stable")[: self.settings.top_k]

    def _served_probas(self, scored: _Scored) -> dict[Hashable, float]:
        if self.settings.prediction == "top1":
            return dict(scored.tree_probas[scored.top1])
        chosen = self._top_k(scored)
        total = float(scored.weights[chosen].sum()) or 1.0
        vote: dict[Hashable, float] = dict.fromkeys(self.classes, 0.0)
        for index in chosen:
            for label, probability in scored.tree_probas[index].items():
                vote[label] += float(scored.weights[index]) * probability / total
        return vote

    def _prediction(self, scored: _Scored) -> Hashable | None:
        if self.settings.prediction == "top1":
            return scored.tree_predictions[scored.top1]
        return self._argmax(self._served_probas(scored))

    def _watch_trees(self, hits: np.ndarray) -> None:
        """Each tree's ADWIN on its own 0/1 error; a tree whose error rose is reset.

        A tree that has learned nothing yet is skipped: its error says nothing about a drift,
        and resetting it would only count a reset.
        """
        assert self.tree_detectors is not None
        for index, detector in enumerate(self.tree_detectors):
            if self.tree_instances[index] == 0:
                continue
            error_before = detector.estimation
            detector.update(1.0 - hits[index])
            if detector.drift_detected and detector.estimation > error_before:
                logger.debug("DriftMoE: tree %d's error rose to %.3f; resetting it", index, detector.estimation)
                self.reset_tree(index)

    def _new_tree(self) -> tree.HoeffdingTreeClassifier:
        return tree.HoeffdingTreeClassifier(grace_period=self.settings.grace_period, delta=self.settings.split_confidence)

    def _check_label(self, y: Hashable) -> None:
        if self.fixed_classes and y not in self.classes:
            raise ValueError(f"label {y!r} is not one of the learner's classes {self.classes}")

    def _vector(self, x: np.ndarray) -> np.ndarray:
        vector = np.asarray(x, dtype=np.float64)
        if vector.shape != (self.n_features,):
            raise ValueError(f"expected a feature vector of shape ({self.n_features},), got {vector.shape}")
        return vector

    @staticmethod
    def _tree_features(vector: np.ndarray) -> dict[int, float]:
        return dict(enumerate(vector.tolist()))

    def _score(self, x: np.ndarray) -> _Scored:
        vector = self._vector(x)
        if self._last is not None and np.array_equal(self._last.vector, vector):
            return self._last
        with torch.inference_mode():
            logits = self.router(torch.from_numpy(vector.astype(np.float32))[None])[0]  # (E,)
            weights = torch.softmax(logits / self.settings.temperature, dim=0).numpy()
        features = self._tree_features(vector)
        tree_probas = [self._distribution(member.predict_proba_one(features)) for member in self.trees]
        tree_predictions = [self._argmax(probas) for probas in tree_probas]
        self._last = _Scored(vector=vector.copy(), weights=weights, tree_probas=tree_probas, tree_predictions=tree_predictions)
        return self._last

    def _distribution(self, probas: dict[Hashable, float]) -> dict[Hashable, float]:
        """A tree's output over all known classes; an empty tree is uniform (the paper's rule)."""
        if not self.classes:
            return {}
        if not probas:
            return dict.fromkeys(self.classes, 1.0 / len(self.classes))
        return {label: float(probas.get(label, 0.0)) for label in self.classes}

    @staticmethod
    def _argmax(probas: dict[Hashable, float]) -> Hashable | None:
        return max(probas, key=probas.__getitem__) if probas else None  # first class wins a tie

    def _enqueue(self, vector: np.ndarray, targets: np.ndarray, loss_mask: np.ndarray) -> None:
        self._buffer.append((vector.astype(np.float32), targets, loss_mask))
        if len(self._buffer) >= self.settings.batch_size:
            self._train_router()

    def _train_router(self) -> None:
        """One Adam step on the buffered events, logits recomputed now (the router has moved since they were scored)."""
        features = torch.from_numpy(np.stack([item[0] for item in self._buffer]))  # (B, d)
        targets = torch.from_numpy(np.stack([item[1] for item in self._buffer]))  # (B, E)
        loss_mask = torch.from_numpy(np.stack([item[2] for item in self._buffer]))  # (B, E)
        self._buffer.clear()
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self.settings.seed * 1_000_003 + self.router_steps)  # reproducible dropout
            self.router.train()
            logits = self.router(features)  # (B, E)
            losses = nn.functional.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # (B, E)
            loss = (losses * loss_mask).sum() / loss_mask.sum().clamp_min(1.0)
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            self.router.eval()
        self.router_steps += 1
        self.last_router_loss = float(loss.detach())
        self._last = None

    def _watch_error(self, error: float) -> None:
        """Feed ADWIN the 0/1 error; a change that raised the error is a drift.

        ADWIN flags any change in the mean, including the error falling while the trees are
        still learning; resetting a tree then would throw away progress, so only a rise counts.
        """
        assert self.adwin is not None
        error_before = self.adwin.estimation
        self.adwin.update(error)
        if not self.adwin.drift_detected:
            return
        if self.adwin.estimation <= error_before:
            self.error_drops_seen += 1
            logger.debug("DriftMoE: the prequential error fell to %.3f (not a drift)", self.adwin.estimation)
            return
        self.drifts_detected += 1
        LEARNER_DRIFTS.inc()
        worst = int(np.argmin(self.tree_accuracy))
        logger.warning(
            "DriftMoE: drift detected in the prequential error (detection %d, error estimate %.3f); resetting tree %d "
            "(running accuracy %.3f)",
            self.drifts_detected,
            self.adwin.estimation,
            worst,
            self.tree_accuracy[worst],
        )
        self.reset_tree(worst)
