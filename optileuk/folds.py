"""A candidate's value over the folds of the search part, with what selection rules need beside it
(numpy only: the objectives write these attrs, :mod:`optileuk.selection` reads them).

Every objective that scores folds records, as trial user attrs,

* ``fold_values``: the value on each fold (``folds x repeats`` of them, repeat 0 first), in the units
  of the trial's value (e.g. ``1 - balanced accuracy``);
* ``n_folds`` and ``value_se``: the standard error of their mean, with Nadeau and Bengio's
  correction for folds whose training parts overlap (``sqrt((1/n + n_val/n_train) * var)``;
  Bouckaert and Frank's "corrected repeated k-fold" test): the plain ``sd/sqrt(n)`` of cross-validated
  values is too small, the more so the more repeats. With one validation split, ``value_se`` is the
  bootstrap standard error over its items;
* ``val_share``: ``n_val / n_train`` of the folds, which the correction (and a paired comparison of
  two trials on the same folds, :func:`paired`) uses;
* ``oof`` (only when asked, for ensemble selection): the out-of-fold predictions of every repeat,
  packed as data.

Two options ride in a candidate's config, set by the runner, never by a search space:
:data:`REPEAT` (evaluate on that repeat's folds only: a race's new resample) and :data:`OOF`.
"""

from __future__ import annotations

import base64
import math
from typing import Any, Mapping, Sequence

import numpy as np

REPEAT = "optileuk.repeat"  # evaluate on the folds of this repeat only (a repeat >= split.repeats is new)
OOF = "optileuk.oof"  # record the out-of-fold predictions (ensemble selection needs them)


def options(config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(the candidate's parameters, the evaluation options)`` of a config the runner handed over."""
    params = {k: v for k, v in config.items() if not k.startswith("optileuk.")}
    return params, {k: v for k, v in config.items() if k.startswith("optileuk.")}


def corrected_se(values: Sequence[float], val_share: float) -> float | None:
    """Standard error of the mean of fold values, corrected for overlapping training parts
    (``None`` with fewer than two values).

    Example:
        >>> round(corrected_se([0.1, 0.2, 0.3], 0.5), 4)
        0.0913
    """
    v = np.asarray(values, float)
    if len(v) < 2:
        return None
    return float(math.sqrt((1.0 / len(v) + max(val_share, 0.0)) * v.var(ddof=1)))


def fold_attrs(values: Sequence[float], folds: Sequence[Any], *, se: float | None = None) -> dict[str, Any]:
    """``fold_values``, ``n_folds``, ``val_share`` and ``value_se`` of values scored on ``folds`` (objects
    with ``train`` and ``val`` index arrays); ``se`` replaces the fold-based one (one split: bootstrap)."""
    share = float(np.mean([len(f.val) for f in folds]) / max(np.mean([len(f.train) for f in folds]), 1))
    out: dict[str, Any] = {"fold_values": [float(v) for v in values], "n_folds": len(values), "val_share": share}
    value_se = corrected_se(values, share) if se is None else se
    if value_se is not None:
        out["value_se"] = value_se
    return out


def pack(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<i2").tobytes()).decode()


def unpack(text: str, shape: Sequence[int]) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype="<i2").reshape(tuple(shape)).astype(np.int64)


def oof_attr(search: np.ndarray, folds: Sequence[Any], preds: Sequence[np.ndarray], labels: np.ndarray,
             repeats: int) -> dict[str, Any]:
    """The out-of-fold predictions of every repeat over the search part (``-1``: not scored in that
    repeat), with the truth, packed: ``{"shape": [repeats, n], "y": ..., "pred": ...}``."""
    pos = {int(i): j for j, i in enumerate(search)}
    out = np.full((repeats, len(search)), -1, dtype=np.int64)
    for fold, pred in zip(folds, preds):
        out[fold.repeat, [pos[int(i)] for i in fold.val]] = pred
    return {"shape": [repeats, len(search)], "y": pack(labels[search]), "pred": pack(out)}


def read_oof(attr: Mapping[str, Any]) -> tuple[np.ndarray, np.ndarray]:
    """``(truth (n,), predictions (repeats, n))`` of an ``oof`` user attr."""
    shape = attr["shape"]
    return unpack(attr["y"], [shape[1]]), unpack(attr["pred"], shape)


def paired(a: Mapping[str, Any], b: Mapping[str, Any]) -> dict[str, Any] | None:
    """The mean of ``a``'s fold values minus ``b``'s on the same folds, with its corrected standard error
    (user attrs of two trials of one study). With one fold each, the unpaired ``sqrt(se_a**2 + se_b**2)``
    (conservative); ``None`` when either has no fold values or their folds differ."""
    va, vb = a.get("fold_values"), b.get("fold_values")
    if not va or not vb or len(va) != len(vb):
        return None
    d = np.asarray(va, float) - np.asarray(vb, float)
    if len(d) >= 2:
        se = corrected_se(d, float(a.get("val_share", b.get("val_share", 0.0))))
        how = "paired over folds"
    else:
        sa, sb = a.get("value_se"), b.get("value_se")
        if sa is None or sb is None:
            return None
        se, how = math.sqrt(sa ** 2 + sb ** 2), "unpaired (one validation split)"
    return {"difference": float(d.mean()), "se": float(se), "how": how}


def vote(predictions: Sequence[np.ndarray], weights: Sequence[float], n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """``(labels, vote shares (N, n_classes))`` of members' predicted labels (``-1``: none) by weight;
    ties go to the first member's class.

    Example:
        >>> labels, shares = vote([np.array([0, 1]), np.array([1, 1])], [1.0, 1.0], 2)
        >>> labels.tolist(), shares[0].tolist()
        ([0, 1], [0.5, 0.5])
    """
    n = len(predictions[0])
    shares = np.zeros((n, n_classes))
    for pred, w in zip(predictions, weights):
        pred = np.asarray(pred)
        ok = pred >= 0
        shares[np.flatnonzero(ok), pred[ok]] += w
    total = shares.sum(1, keepdims=True)
    shares = np.divide(shares, total, out=np.zeros_like(shares), where=total > 0)
    first = np.asarray(predictions[0])
    tie = np.zeros_like(shares)
    tie[np.flatnonzero(first >= 0), first[first >= 0]] = 1e-9
    labels = np.where(total[:, 0] > 0, (shares + tie).argmax(1), -1)
    return labels, shares
