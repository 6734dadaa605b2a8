"""The shortcut audit: what a model that cannot see the cell would score on the same outer parts.

Public blood-cell sets give the class away by things that are not the cell: the crop size (one
class cropped tighter), the slide (each class photographed on its own slides: the background
colour), the file format. Small classifiers that see only

* ``size``: image height, width, aspect ratio, area and file format;
* ``border``: colour statistics of a thin frame around the image;
* ``centre_masked``: a 16x16 thumbnail whose centre (the middle 60% of each side) is blanked;

are cross-validated on the outer parts (fitted on the other parts, scored on each part once,
predictions pooled) and their balanced accuracy is given with a bootstrap interval. One whose
interval's lower bound is above chance + 0.2 is a warning naming the shortcut. Exact and near
duplicate images (a 64-bit difference hash) in different parts are the other classic leak; class
balance and per-class image sizes are reported beside them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from optileuk.data import CORRELATION, NEAR, Dataset

SHORTCUTS = {"size": "only the image size, aspect and file format",
             "border": "only the colour of the image border",
             "centre_masked": "only the image with its centre (the cell) blanked out"}
MARGIN = 0.2  # a shortcut classifier whose interval's lower bound is above chance + MARGIN is a warning
_FRAME, _THUMB, _MASKED = 0.08, 16, 0.6


def size_features(ds: Dataset) -> np.ndarray:
    """Height, width, aspect, log area and the file format (one-hot) of each image."""
    h = np.array([im.shape[0] for im in ds.images], float)
    w = np.array([im.shape[1] for im in ds.images], float)
    fmt = [Path(p).suffix.lower() if ds.paths and "." in Path(p).name else "array"
           for p in (ds.paths or [""] * len(ds))]
    kinds = sorted(set(fmt))
    onehot = np.array([[f == k for k in kinds] for f in fmt], float)
    return np.column_stack([h, w, h / w, np.log(h * w), onehot])


def border_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """Mean and standard deviation of R, G, B and of grey on a frame 8% of the shorter side wide."""
    out = []
    for im in images:
        t = max(1, round(_FRAME * min(im.shape[:2])))
        frame = np.concatenate([im[:t].reshape(-1, 3), im[-t:].reshape(-1, 3), im[t:-t, :t].reshape(-1, 3),
                                im[t:-t, -t:].reshape(-1, 3)]).astype(float)
        grey = frame.mean(1)
        out.append([*frame.mean(0), *frame.std(0), grey.mean(), grey.std()])
    return np.array(out)


def centre_masked_features(images: Sequence[np.ndarray]) -> np.ndarray:
    """A 16x16 RGB thumbnail of each image with the middle 60% of each side blanked (only its edges)."""
    from PIL import Image

    lo = round(_THUMB * (1 - _MASKED) / 2)
    keep = np.ones((_THUMB, _THUMB), bool)
    keep[lo:_THUMB - lo, lo:_THUMB - lo] = False
    thumbs = [np.asarray(Image.fromarray(im).resize((_THUMB, _THUMB), Image.BILINEAR), float)[keep] for im in images]
    return np.array([t.ravel() for t in thumbs]) / 255.0


def cross_validate(X: np.ndarray, labels: np.ndarray, parts: list[np.ndarray], n_classes: int,
                   seed: int = 0) -> dict[str, Any]:
    """Balanced accuracy of a scaled, class-balanced logistic regression, each outer part predicted by a
    model fitted on the others; pooled, with a bootstrap 95% interval."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import balanced_accuracy_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    from optileuk.metrics import bootstrap_ci

    pred = np.zeros(len(labels), dtype=np.int64)
    for part in parts:
        train = np.setdiff1d(np.arange(len(labels)), part)
        if len(np.unique(labels[train])) < 2:
            pred[part] = labels[train][0]
            continue
        model = make_pipeline(StandardScaler(), LogisticRegression(C=1.0, class_weight="balanced", max_iter=3000))
        pred[part] = model.fit(X[train], labels[train]).predict(X[part])
    ci = bootstrap_ci(labels, pred, n_classes, seed=seed)["balanced_accuracy"]
    return {"balanced_accuracy": float(balanced_accuracy_score(labels, pred)), "ci95": ci}


def duplicates(images: Sequence[np.ndarray], part_of: np.ndarray, labels: np.ndarray, names: Sequence[str],
               examples: int = 5) -> dict[str, Any]:
    """Exact duplicates (same pixels) and near duplicates between different outer parts, examples named
    (:mod:`optileuk.data`'s index: difference hashes at most :data:`NEAR` bits apart *and* grey 32x32
    thumbnails correlated at :data:`CORRELATION` or more; a hash alone pairs any two blurry blobs).
    Data loaded by optileuk have them merged into one group already, so none crosses a part there."""
    from optileuk.data import exact_sets, near_pairs

    exact_pairs = [(a, b) for idx in exact_sets(images) for j, a in enumerate(idx) for b in idx[j + 1:]
                   if part_of[a] != part_of[b]]
    near = [(a, b) for a, b in near_pairs(images) if part_of[a] != part_of[b]]

    def show(pairs):
        return [{"a": names[a], "b": names[b], "same_class": bool(labels[a] == labels[b])} for a, b in pairs[:examples]]

    return {"exact_pairs_across_parts": len(exact_pairs), "near_pairs_across_parts": len(near),
            "near": f"difference hashes at most {NEAR} bits apart, thumbnails correlated >= {CORRELATION}",
            "exact_examples": show(exact_pairs), "near_examples": show(near)}


def image_sizes(ds: Dataset) -> dict[str, Any]:
    """Per class: how many images, and the spread of their heights and widths."""
    out = {}
    for k, c in enumerate(ds.classes):
        idx = np.flatnonzero(ds.labels == k)
        if not len(idx):
            continue
        h = np.array([ds.images[i].shape[0] for i in idx])
        w = np.array([ds.images[i].shape[1] for i in idx])
        out[c] = {"images": int(len(idx)), "height": [int(h.min()), int(np.median(h)), int(h.max())],
                  "width": [int(w.min()), int(np.median(w)), int(w.max())]}
    return out


def audit(ds: Dataset, parts: list[np.ndarray], *, seed: int = 0) -> dict[str, Any]:
    """The audit of ``ds`` on the outer ``parts`` (see the module's description)."""
    part_of = np.zeros(len(ds), int)
    for i, p in enumerate(parts):
        part_of[p] = i
    present = sorted(set(ds.labels.tolist()))
    names = [Path(p).name if ds.paths else f"#{i}" for i, p in enumerate(ds.paths or range(len(ds)))]
    out: dict[str, Any] = {"images": len(ds), "outer_parts": len(parts), "classes": ds.counts(),
                           "sizes": image_sizes(ds), "duplicates": duplicates(ds.images, part_of, ds.labels, names),
                           "merged": ds.duplicates,
                           "shortcuts": {}, "warnings": []}
    if len(present) >= 2:
        chance = 1.0 / len(present)
        out["chance"] = chance
        feats = {"size": size_features(ds), "border": border_features(ds.images),
                 "centre_masked": centre_masked_features(ds.images)}
        for name, X in feats.items():
            res = cross_validate(X, ds.labels, parts, len(ds.classes), seed)
            res["sees"] = SHORTCUTS[name]
            res["flag"] = res["ci95"][0] > chance + MARGIN
            out["shortcuts"][name] = res
            if res["flag"]:
                out["warnings"].append(
                    f"a model that sees {SHORTCUTS[name]} reaches balanced accuracy {res['balanced_accuracy']:.2f} "
                    f"[{res['ci95'][0]:.2f}, {res['ci95'][1]:.2f}] here (chance {chance:.2f}): the data give the "
                    "class away without the cell; a high score on it does not show that a model learnt the cell")
    dup = out["duplicates"]
    if dup["exact_pairs_across_parts"]:
        out["warnings"].append(f"{dup['exact_pairs_across_parts']} pair(s) of identical images sit in different outer "
                               f"parts (e.g. {dup['exact_examples'][0]['a']} and {dup['exact_examples'][0]['b']}): "
                               "the same image is trained on and scored")
    if dup["near_pairs_across_parts"] > 0.01 * len(ds):
        out["warnings"].append(f"{dup['near_pairs_across_parts']} pair(s) of near-identical images ({dup['near']}) "
                               "sit in different outer parts: check for repeated crops of one cell, or group them "
                               "(group_pattern)")
    counts = np.array([n for n in ds.counts().values() if n])
    if len(counts) >= 2 and counts.max() > 3 * counts.min():
        out["imbalance"] = float(counts.max() / counts.min())
    return out
