"""The final fit of a tuned config: train on the whole search part, score once on the test split.

``optileuk train`` calls an objective's ``train_final(params)``; it returns a :class:`Final` with
the metrics, the predictions they were computed from and the trained weights.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Optional

import numpy as np

from optileuk.errors import ConfigError, Problem
from optileuk.metrics import classification_metrics, segmentation_metrics

TEST_SPLIT = "test (held out before the search; never seen while tuning)"
Step = Optional[Callable[[int, int, str], None]]  # (done, total, what) for a progress bar


NO_TEST = ("is 0: nothing was held out to score (optileuk train scores the test split the search never saw; "
           "tune with test_size above 0)")


def require_test(test: np.ndarray) -> None:
    """Refuse a final fit when the split held nothing out (``test``: the test indices, empty when
    ``split.test_size`` is 0)."""
    if len(test) == 0:
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


def mask_predictions(preds: list[np.ndarray], truths: list[np.ndarray], index: np.ndarray) -> dict[str, np.ndarray]:
    """Masks as ``pred_<i>`` / ``truth_<i>`` arrays (images may differ in size) plus their dataset index."""
    out = {"index": np.asarray(index)}
    for i, (p, t) in enumerate(zip(preds, truths)):
        out[f"pred_{i}"] = np.asarray(p, dtype=bool)
        out[f"truth_{i}"] = np.asarray(t, dtype=bool)
    return out
