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


NO_TEST = ("is 0: nothing was held out to score (optileuk train scores the test split the search never saw; "
           "tune with test_size above 0)")


def require_test(test: np.ndarray) -> None:
    """Refuse a final fit when the split held nothing out (``test``: the test indices, empty when
    ``split.test_size`` is 0)."""
    if len(test) == 0:
        from optileuk.errors import ConfigError, Problem

        raise ConfigError([Problem("", "objective.split.test_size", NO_TEST, 0)])


@dataclass
class Final:
    """What a final fit gives. ``predictions`` are saved as ``predictions.npz``, ``model`` as the
    run folder's model bundle (:mod:`optileuk.bundle`)."""

    task: Literal["classification", "segmentation"]
    metrics: dict[str, Any]
    predictions: dict[str, np.ndarray]
    model: Any = None  # a FittedModel (optileuk.objectives._model)
    facts: dict[str, Any] = field(default_factory=dict)
    training_data: dict[str, Any] = field(default_factory=dict)  # what the model was fitted on (model.json)


@dataclass
class Fitted:
    """What ``fit_final`` gives: the fitted model, facts for metrics.json, metrics and arrays to add."""

    model: Any
    facts: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    predictions: dict[str, np.ndarray] = field(default_factory=dict)


def final_classification(model, ds, splits, *, training_data: dict[str, Any], facts: dict[str, Any],
                         metrics: dict[str, Any] | None = None) -> Final:
    """Score a fitted classifier once on the test split, through the model's own path for new images
    (:meth:`~optileuk.objectives._model.FittedModel.apply_many`: stain, geometry, features, classifier)."""
    test = splits.test
    pred = model.apply_many([ds.images[i] for i in test])
    y = ds.labels[test]
    out = {**classification_metrics(y, pred.labels, pred.scores, ds.classes), "split": TEST_SPLIT,
           "scores": "probability" if pred.probabilities else "decision function (AUC ranks by it)", **(metrics or {})}
    predictions = {"y_true": y, "y_pred": pred.labels, "proba": pred.scores, "index": test,
                   "classes": np.array(ds.classes)}
    return Final("classification", out, predictions, model=model, facts=facts, training_data=training_data)


def final_segmentation(model, ds, splits, target: str, *, training_data: dict[str, Any], facts: dict[str, Any],
                       metrics: dict[str, Any] | None = None) -> Final:
    """Segment the test split once through the model's own path and score it on each image's pixels."""
    test = splits.test
    pred = model.apply_many([ds.images[i] for i in test])
    want = 2 if target == "nucleus" else 1
    preds = [m >= want for m in pred.masks]
    truths = [(ds.masks[i] == 2) if target == "nucleus" else (ds.masks[i] >= 1) for i in test]
    out = {**segmentation_metrics(preds, truths), "split": TEST_SPLIT, "target": target, **(metrics or {})}
    return Final("segmentation", out, mask_predictions(preds, truths, test), model=model, facts=facts,
                 training_data=training_data)


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
    values = {"accuracy": tp.sum(1) / len(y), "balanced_accuracy": np.nanmean(recall, 1), "macro_f1": np.nanmean(f1, 1)}
    lo, hi = 100 * (1 - level) / 2, 100 * (1 + level) / 2
    return {name: [float(np.percentile(v, lo)), float(np.percentile(v, hi))] for name, v in values.items()}


def fold_scores(ys: list[np.ndarray], preds: list[np.ndarray], n_classes: int, seed: int = 0) -> dict[str, Any]:
    """Validation scores over folds: accuracy, balanced accuracy and macro-F1 as the mean over the
    folds, and bootstrap 95% intervals (``<name>_ci95``) from the pooled out-of-fold predictions."""
    labels = list(range(n_classes))
    out = {"accuracy": float(np.mean([accuracy_score(y, p) for y, p in zip(ys, preds)])),
           "balanced_accuracy": float(np.mean([balanced_accuracy_score(y, p) for y, p in zip(ys, preds)])),
           "macro_f1": float(np.mean([f1_score(y, p, average="macro", labels=labels, zero_division=0)
                                      for y, p in zip(ys, preds)]))}
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
        "accuracy": float(accuracy_score(y, pred)),
        "balanced_accuracy": float(balanced_accuracy_score(y, pred)),
        "macro_f1": float(f1_score(y, pred, average="macro", labels=labels, zero_division=0)),
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


def mask_predictions(preds: list[np.ndarray], truths: list[np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Masks as ``pred_<i>`` / ``truth_<i>`` arrays (images may differ in size) plus their dataset index."""
    out = {"index": np.asarray(index)}
    for i, (p, t) in enumerate(zip(preds, truths)):
        out[f"pred_{i}"] = np.asarray(p, dtype=bool)
        out[f"truth_{i}"] = np.asarray(t, dtype=bool)
    return out
