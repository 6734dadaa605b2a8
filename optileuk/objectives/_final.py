"""The final fit of a tuned config: train on the whole search part, score once on the test split.

``optileuk train`` calls an objective's ``train_final(params)``; it returns a :class:`Final` with
the metrics, the predictions they were computed from and the trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import numpy as np
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score
from skimage.metrics import structural_similarity

TEST_SPLIT = "test (held out before the search; never seen while tuning)"
Step = Optional[Callable[[int, int, str], None]]  # (done, total, what) for a progress bar


@dataclass
class Final:
    """What a final fit gives. ``predictions`` are saved as ``predictions.npz``."""

    task: Literal["classification", "segmentation"]
    metrics: dict[str, Any]
    predictions: dict[str, np.ndarray]
    state_dict: dict[str, Any] | None = None  # torch weights, saved as model.pt
    model: Any = None  # a fitted non-torch model (scikit-learn), pickled as model.pkl
    facts: dict[str, Any] = field(default_factory=dict)


def classification_metrics(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1, ROC AUC (one-vs-rest, macro) and the confusion matrix.

    ``proba`` holds per-class scores (probabilities, or any score that ranks samples per class).
    """
    labels = list(range(len(classes)))
    out: dict[str, Any] = {
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
        "auc": None,
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "classes": list(classes),
        "n_test": int(len(y)),
    }
    if proba is None:
        out["auc_note"] = "the classifier gives no class scores"
    elif len(np.unique(y)) < len(classes):
        out["auc_note"] = "not every class is in the test split"
    else:  # one-vs-rest, macro: what roc_auc_score(multi_class="ovr") gives for probabilities
        out["auc"] = float(np.mean([roc_auc_score(y == k, proba[:, k]) for k in labels]))
    return out


def class_scores(model, X: np.ndarray, n_classes: int) -> tuple[np.ndarray, str]:
    """Per-class scores of a fitted scikit-learn model for every class index (0 where it saw none):
    probabilities when it has them, else its decision function (an SVM)."""
    out = np.zeros((len(X), n_classes))
    if hasattr(model, "predict_proba"):
        out[:, model.classes_] = model.predict_proba(X)
        return out, "probability"
    s = model.decision_function(X)
    out[:, model.classes_] = np.stack([-s, s], 1) if s.ndim == 1 else s
    return out, "decision function (AUC ranks by it)"
    return out


def mask_scores(pred: np.ndarray, truth: np.ndarray) -> tuple[float, float, float]:
    """Dice, IoU and SSIM of one binary mask against the truth (both empty counts as perfect)."""
    pred, truth = pred.astype(bool), truth.astype(bool)
    inter, total = np.logical_and(pred, truth).sum(), pred.sum() + truth.sum()
    union = np.logical_or(pred, truth).sum()
    dice = 1.0 if total == 0 else 2 * inter / total
    iou = 1.0 if union == 0 else inter / union
    ssim = structural_similarity(pred.astype(float), truth.astype(float), data_range=1.0)
    return float(dice), float(iou), float(ssim)


def segmentation_metrics(preds: list[np.ndarray], truths: list[np.ndarray]) -> dict[str, Any]:
    """Mean Dice, IoU and SSIM over images, and their mean (the seed paper's score)."""
    per = np.array([mask_scores(p, t) for p, t in zip(preds, truths)])
    out = {"dice": float(per[:, 0].mean()), "iou": float(per[:, 1].mean()), "ssim": float(per[:, 2].mean())}
    out["mean"] = (out["dice"] + out["iou"] + out["ssim"]) / 3
    out["n_test"] = len(preds)
    return out


def mask_predictions(preds: list[np.ndarray], truths: list[np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Masks as ``pred_<i>`` / ``truth_<i>`` arrays (images may differ in size) plus their dataset index."""
    out = {"index": np.asarray(index)}
    for i, (p, t) in enumerate(zip(preds, truths)):
        out[f"pred_{i}"] = np.asarray(p, dtype=bool)
        out[f"truth_{i}"] = np.asarray(t, dtype=bool)
    return out
