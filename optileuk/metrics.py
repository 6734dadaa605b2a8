"""The scores optileuk reports, computed in one place for the search, ``train``, ``predict`` and
``assess``: accuracy, balanced accuracy and macro-F1 of a classifier (:func:`scores`), with
bootstrap intervals and the confusion matrix (:func:`classification_metrics`); Dice, IoU and SSIM
of masks (:func:`mask_scores`, :func:`segmentation_metrics`).
"""

from __future__ import annotations

from typing import Any

import numpy as np
from sklearn.metrics import confusion_matrix, roc_auc_score
from skimage.metrics import structural_similarity


def scores(y: np.ndarray, pred: np.ndarray, n_classes: int) -> dict[str, float]:
    """Accuracy, balanced accuracy and macro-F1 from one confusion matrix, as scikit-learn defines
    them: balanced accuracy over the classes present in ``y``; macro-F1 over every class index below
    ``n_classes`` (``labels=range(n_classes), zero_division=0``: a class neither true nor predicted
    counts 0). Fast enough for the thousands of candidates a feature-selection search scores.

    Example:
        >>> scores(np.array([0, 0, 1, 1]), np.array([0, 1, 1, 1]), 2)["balanced_accuracy"]
        0.75
    """
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    k = n_classes
    cm = np.bincount(y * k + pred, minlength=k * k).reshape(k, k)
    tp, true, said = np.diag(cm), cm.sum(1), cm.sum(0)
    present = true > 0
    f1 = np.where(true + said > 0, 2 * tp / np.maximum(true + said, 1), 0.0)
    return {"accuracy": float(tp.sum() / max(cm.sum(), 1)),
            "balanced_accuracy": float((tp[present] / true[present]).mean()) if present.any() else 0.0,
            "macro_f1": float(f1.mean())}


def bootstrap_ci(y: np.ndarray, pred: np.ndarray, n_classes: int, *, n_boot: int = 2000, seed: int = 0,
                 level: float = 0.95) -> dict[str, list[float]]:
    """Percentile bootstrap intervals of accuracy, balanced accuracy and macro-F1: the cells are
    resampled with replacement ``n_boot`` times (seeded), each metric computed on every resample
    (balanced accuracy over the classes present in the resample, macro-F1 over the classes present
    in its truth or predictions, as scikit-learn defines them).

    Example:
        >>> y = np.array([0] * 20 + [1] * 20); pred = y.copy(); pred[:4] = 1
        >>> ci = bootstrap_ci(y, pred, 2)
        >>> ci["balanced_accuracy"][0] < 0.9 < ci["balanced_accuracy"][1]
        True
    """
    values = _boot_values(y, pred, n_classes, n_boot, seed)
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {name: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for name, v in values.items()}


def bootstrap_se(y: np.ndarray, pred: np.ndarray, n_classes: int, *, n_boot: int = 1000, seed: int = 0) -> dict[str, float]:
    """Bootstrap standard errors of accuracy, balanced accuracy and macro-F1 (resamples as :func:`bootstrap_ci`)."""
    return {name: float(np.std(v, ddof=1)) for name, v in _boot_values(y, pred, n_classes, n_boot, seed).items()}


def _boot_values(y, pred, n_classes: int, n_boot: int, seed: int) -> dict[str, np.ndarray]:
    y, pred = np.asarray(y, dtype=np.int64), np.asarray(pred, dtype=np.int64)
    if len(y) == 0:
        return {}
    k = n_classes
    draw = np.random.default_rng(seed).integers(0, len(y), size=(n_boot, len(y)))
    cells = (np.arange(n_boot)[:, None] * k * k + y[draw] * k + pred[draw]).ravel()
    cm = np.bincount(cells, minlength=n_boot * k * k).reshape(n_boot, k, k).astype(np.float64)
    tp, true, said = np.einsum("bii->bi", cm), cm.sum(2), cm.sum(1)
    with np.errstate(invalid="ignore", divide="ignore"):
        recall = np.where(true > 0, tp / true, np.nan)
        f1 = np.where(true + said > 0, 2 * tp / (true + said), np.nan)
    return {"accuracy": tp.sum(1) / len(y), "balanced_accuracy": np.nanmean(recall, 1), "macro_f1": np.nanmean(f1, 1)}


def fold_scores(ys: list[np.ndarray], preds: list[np.ndarray], n_classes: int, seed: int = 0,
                per: list[dict[str, float]] | None = None) -> dict[str, Any]:
    """Validation scores over folds: accuracy, balanced accuracy and macro-F1 as the mean over the
    folds, and bootstrap 95% intervals (``<name>_ci95``) from the pooled out-of-fold predictions.
    ``per``: the folds' own :func:`scores`, when the caller has them already."""
    per = per if per is not None else [scores(y, p, n_classes) for y, p in zip(ys, preds)]
    out: dict[str, Any] = {k: float(np.mean([s[k] for s in per])) for k in ("accuracy", "balanced_accuracy", "macro_f1")}
    ci = bootstrap_ci(np.concatenate(ys), np.concatenate(preds), n_classes, n_boot=1000, seed=seed)
    out.update({f"{k}_ci95": v for k, v in ci.items()})
    return out


def classification_metrics(y: np.ndarray, pred: np.ndarray, proba: np.ndarray | None, classes: list[str]) -> dict[str, Any]:
    """Accuracy, balanced accuracy, macro-F1 (each with a bootstrap 95% interval, ``<name>_ci95``),
    ROC AUC (one-vs-rest, macro) and the confusion matrix.

    ``proba`` holds per-class scores (probabilities, or any score that ranks samples per class).
    """
    labels = list(range(len(classes)))
    out: dict[str, Any] = {
        **scores(y, pred, len(classes)),
        "auc": None,
        "confusion_matrix": confusion_matrix(y, pred, labels=labels).tolist(),
        "classes": list(classes),
        "n_test": int(len(y)),
    }
    out.update({f"{name}_ci95": ci for name, ci in bootstrap_ci(y, pred, len(classes)).items()})
    if proba is None:
        out["auc_note"] = "the classifier gives no class scores"
    elif len(np.unique(y)) < len(classes):
        out["auc_note"] = "not every class is in the test split"
    else:  # one-vs-rest, macro: what roc_auc_score(multi_class="ovr") gives for probabilities
        out["auc"] = float(np.mean([roc_auc_score(y == k, proba[:, k]) for k in labels]))
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
    """Mean Dice, IoU and SSIM over images, their mean (the seed paper's score), and bootstrap 95%
    intervals of each mean over the images (``<name>_ci95``)."""
    per = np.array([mask_scores(p, t) for p, t in zip(preds, truths)])
    out = {"dice": float(per[:, 0].mean()), "iou": float(per[:, 1].mean()), "ssim": float(per[:, 2].mean())}
    out["mean"] = (out["dice"] + out["iou"] + out["ssim"]) / 3
    out["n_test"] = len(preds)
    for j, name in enumerate(("dice", "iou", "ssim")):
        out[f"{name}_ci95"] = mean_ci(per[:, j])
    return out


def mean_ci(values: np.ndarray, *, n_boot: int = 2000, seed: int = 0, level: float = 0.95) -> list[float]:
    """Percentile bootstrap interval of the mean of ``values`` (items resampled with replacement)."""
    values = np.asarray(values, dtype=float)
    if len(values) == 0:
        return []
    means = values[np.random.default_rng(seed).integers(0, len(values), size=(n_boot, len(values)))].mean(1)
    return [float(np.percentile(means, 100 * (1 - level) / 2)), float(np.percentile(means, 100 * (1 + level) / 2))]
