"""Fit the out-of-distribution check (``services.router.ood``) on the calibration split.

The banks are the training split's embeddings: in-scope prompts, and the ``out_of_scope`` ones
(chit-chat, requests without a task) when the data has them. ``k`` is chosen by the area under
the ROC curve on calibration, and the threshold at the point of that curve with the largest
``recall on out-of-scope − share of in-scope flagged`` (Youden's J). The test split is only
reported.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from services.router.ood import OutOfDistribution, OutOfDistributionSettings

NEIGHBOURS = (1, 3, 5, 10)


def _labelled(in_scope: np.ndarray, out_of_scope: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(embeddings, 1 for out of scope) of one split."""
    return np.concatenate([in_scope, out_of_scope]), np.concatenate([np.zeros(len(in_scope)), np.ones(len(out_of_scope))])


def rates(detector: OutOfDistribution, in_scope: np.ndarray, out_of_scope: np.ndarray) -> dict[str, Any]:
    """How the check does on one split: in-scope prompts flagged, out-of-scope ones caught, AUROC."""
    from sklearn.metrics import roc_auc_score

    inside = detector.flags(in_scope)[1] if len(in_scope) else np.zeros(0, bool)
    outside = detector.flags(out_of_scope)[1] if len(out_of_scope) else np.zeros(0, bool)
    row: dict[str, Any] = {
        "in_scope_flagged": float(inside.mean()) if len(inside) else None,
        "out_of_scope_caught": float(outside.mean()) if len(outside) else None,
        "in_scope": len(in_scope),
        "out_of_scope": len(out_of_scope),
    }
    if len(in_scope) and len(out_of_scope):
        embeddings, truth = _labelled(in_scope, out_of_scope)
        row["auroc"] = float(roc_auc_score(truth, detector.scores(embeddings)))
    return row


def fit_ood(
    train_in: np.ndarray, train_out: np.ndarray, calibration_in: np.ndarray, calibration_out: np.ndarray
) -> tuple[OutOfDistribution | None, dict[str, Any]]:
    """The calibrated check and its calibration figures; None when there is no out-of-scope data
    to calibrate on (the router then decides by confidence and entropy alone, as before)."""
    from sklearn.metrics import roc_auc_score, roc_curve

    if not len(train_out) or not len(calibration_out) or not len(calibration_in):
        return None, {"skipped": "no out_of_scope prompts in the train and calibration splits"}
    embeddings, truth = _labelled(calibration_in, calibration_out)

    def detector(k: int, threshold: float = 0.0) -> OutOfDistribution:
        settings = OutOfDistributionSettings(
            neighbours=k, threshold=threshold, in_scope_examples=len(train_in), out_of_scope_examples=len(train_out)
        )
        return OutOfDistribution(settings, train_in, train_out)

    scores = {k: detector(k).scores(embeddings) for k in NEIGHBOURS}
    areas = {k: float(roc_auc_score(truth, scores[k])) for k in NEIGHBOURS}
    k = max(NEIGHBOURS, key=lambda value: (areas[value], -value))
    false_positive, true_positive, thresholds = roc_curve(truth, scores[k])
    best = int(np.argmax(true_positive - false_positive))
    # roc_curve's thresholds flag scores >= t; the check flags scores > t, so step just below.
    threshold = float(np.nextafter(thresholds[best], -np.inf))
    fitted = detector(k, threshold)
    return fitted, {"neighbours": k, "auroc_by_neighbours": areas, "threshold": threshold,
                    "calibration": rates(fitted, calibration_in, calibration_out)}
