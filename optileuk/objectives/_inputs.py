"""What every image objective shares: the dataset's images in a chosen stain, fitted without the test split."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from optileuk.data import (Dataset, Fold, SplitConfig, Splits, StainNormaliser, inner_folds, load_dataset,
                           make_splits, read_image)
from optileuk.errors import ConfigError, DataError, Problem

INPUT_KEYS = ("image_size", "resize", "stain")  # searchable; defaults are the objective's keys of the same names


def with_inputs(defaults: dict, config, candidate) -> dict:
    """A candidate's full parameters: the objective's defaults, its input keys, ``config.defaults``, the candidate."""
    return {**defaults, **{k: getattr(config, k) for k in INPUT_KEYS}, **config.defaults, **candidate}


def check_sizes(space, default: int, divisor: int, why: str) -> list[str]:
    """Every ``image_size`` the search can take (or the objective's own) must be a multiple of
    ``divisor``: a problem for the search space, or a :class:`ConfigError` for ``objective.image_size``."""
    p = space.params.get("image_size")
    if p is None:
        if default % divisor:
            raise ConfigError([Problem("", "objective.image_size", f"must be divisible by {why} = {divisor}", default)])
        return []
    sizes = p.choices if getattr(p, "choices", None) else range(int(p.low), int(p.high) + 1, int(p.step or 1))
    bad = [int(s) for s in sizes if int(s) % divisor]
    return [f"image_size must take multiples of {why} = {divisor} only (got {bad[0]}; use choices, or step: "
            f"{divisor} from a multiple)"] if bad else []


class StainedImages:
    """``images(method)``: every image of ``ds`` normalised by ``method`` (none | reinhard | macenko),
    computed once per method. The reference is the image file ``reference`` when given, else a
    montage of the ``fit_on`` images (the search part: never the test split). ``failures[method]``
    counts images Macenko could not normalise (kept as they were)."""

    def __init__(self, ds: Dataset, fit_on, reference: str | None = None, seed: int = 0):
        self.ds, self.fit_on, self.reference, self.seed = ds, np.asarray(fit_on, dtype=int), reference, seed
        self._done: dict[str, list[np.ndarray]] = {"none": ds.images}
        self._norms: dict[str, StainNormaliser] = {}
        self.failures: dict[str, int] = {}

    def normaliser(self, method: str) -> StainNormaliser:
        """The normaliser of ``method``, fitted to the reference (a final model keeps it)."""
        if method not in self._norms:
            ref = [read_image(Path(self.reference))] if self.reference else [self.ds.images[i] for i in self.fit_on]
            self._norms[method] = StainNormaliser(method, ref if method != "none" else [], seed=self.seed)
        return self._norms[method]

    def images(self, method: str) -> list[np.ndarray]:
        if method not in self._done:
            norm = self.normaliser(method)
            self._done[method] = norm.apply(self.ds.images)
            self.failures[method] = norm.failures
        return self._done[method]

    def dataset(self, method: str) -> Dataset:
        return self.ds if method == "none" else replace(self.ds, images=self.images(method))


@dataclass
class Prepared:
    """What an image objective prepares once: the dataset, its splits (the test split held out
    first) and its images in each stain asked for (the reference fitted on the search part only)."""

    ds: Dataset
    splits: Splits
    stained: StainedImages
    split: SplitConfig = field(default_factory=SplitConfig)  # what made ``splits`` (to make new repeats)
    seed: int = 0
    classify: bool = True
    _extra: dict[int, list[Fold]] = field(default_factory=dict, repr=False)

    def sizes(self) -> dict[str, int]:
        """Images per split (:meth:`Splits.sizes`), and how many duplicates were merged into shared groups."""
        out = self.splits.sizes()
        merged = (self.ds.duplicates or {}).get("merged_images", 0)
        if merged:
            out["duplicates_merged"] = int(merged)
        return out

    def folds(self, repeat: int | None = None) -> list[Fold]:
        """Every fold of every repeat (``None``), or the folds of one ``repeat``: one of the split's own
        or, from ``split.repeats`` on, a new partition of the search part (what a race evaluates on)."""
        if repeat is None:
            return self.splits.folds
        if repeat < self.splits.repeats:
            return [f for f in self.splits.folds if f.repeat == repeat]
        if repeat not in self._extra:
            self._extra[repeat] = inner_folds(self.ds, self.splits.search, self.split, self.seed, repeat,
                                              classify=self.classify, grouped=self.splits.grouped)
        return self._extra[repeat]

    def fingerprint(self, idx: np.ndarray | None = None) -> dict[str, Any]:
        """What a model was trained on (the search part by default): images per class and a hash of
        the list of files (or synthetic ids), for model.json."""
        return data_fingerprint(self.ds, self.splits.search if idx is None else idx)

    def identity(self) -> dict[str, Any]:
        """Which images were read, wherever their folder lies now: class counts and the SHA-256 of the
        sorted file names relative to their common folder (synthetic sets: the ids), not the pixels."""
        ds = self.ds
        if ds.paths:
            try:
                root = os.path.commonpath([os.path.dirname(str(p)) for p in ds.paths])
            except ValueError:  # Windows: files on several drives
                root = ""
            names = sorted(os.path.relpath(str(p), root) if root else str(p) for p in ds.paths)
        else:
            names = [f"{ds.name}#{i}" for i in range(len(ds))]
        counts = np.bincount(ds.labels, minlength=len(ds.classes)) if len(ds) else np.zeros(len(ds.classes), int)
        return {"images": len(names), "counts": dict(zip(ds.classes, map(int, counts))),
                "names_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def prepare_images(config, seed: int, *, classify: bool = True, needs_masks: str | None = None) -> Prepared:
    """Load ``config.dataset``, split it (``config.split``; stratified when ``classify``) and set up
    stain normalisation fitted on the search part (or ``config.stain_reference``). ``needs_masks``:
    the message when the dataset has no masks (segmenters)."""
    ds = load_dataset(config.dataset)
    if needs_masks and ds.masks is None:
        raise DataError(f"{ds.name}: {needs_masks}")
    splits = make_splits(ds, config.split, seed=seed, classify=classify)
    return Prepared(ds, splits, StainedImages(ds, splits.search, getattr(config, "stain_reference", None), seed),
                    config.split, seed, classify)


def data_fingerprint(ds: Dataset, idx: np.ndarray) -> dict[str, Any]:
    """Images per class of ``ds[idx]`` and the SHA-256 of their sorted file names (or ids)."""
    idx = np.asarray(idx, dtype=int)
    names = sorted(str(ds.paths[i]) if ds.paths else f"{ds.name}#{i}" for i in idx)
    counts = np.bincount(ds.labels[idx], minlength=len(ds.classes)) if len(idx) else np.zeros(len(ds.classes), int)
    return {"dataset": ds.name, "images": int(len(idx)), "counts": dict(zip(ds.classes, map(int, counts))),
            "files_sha256": hashlib.sha256("\n".join(names).encode()).hexdigest()}


def check_defaults(defaults, valid, name: str) -> None:
    """Refuse ``objective.defaults`` keys that are not parameters of the objective ``name``."""
    unknown = set(defaults) - set(valid)
    if unknown:
        raise ConfigError([Problem("", f"objective.defaults.{sorted(unknown)[0]}",
                                   f"is not a {name} parameter (valid: {', '.join(valid)})")])


def selection_mask(value, n: int, name: str) -> np.ndarray:
    """A feature mask of ``n`` bits from ``value``: bits, or the selected indices (as exported)."""
    if isinstance(value, (list, tuple)) and (len(value) != n or any(int(i) > 1 for i in value)):
        if any(not 0 <= int(i) < n for i in value):
            raise ConfigError([Problem("", name, f"indices must be in 0..{n - 1}", value)])
        value = np.isin(np.arange(n), [int(i) for i in value])
    mask = np.asarray(value, dtype=bool)
    if mask.shape != (n,):
        raise ConfigError([Problem("", name, f"must have {n} bits", mask.shape)])
    return mask


def split_text(folds, splits: Splits) -> str:
    """What a candidate's value was scored on, for its ``split`` user attr."""
    k = splits.per_repeat
    if folds is splits.folds:
        return f"{k}-fold CV, search part" + (f" ({splits.repeats} repeats)" if splits.repeats > 1 else "")
    return f"{k}-fold CV, search part, repeat {folds[0].repeat} (a new partition)"


def cv_score(data: Prepared, folds, preds, seed: int, *, oof: bool = False, value_of=None,
             extra: dict[str, Any] | None = None) -> tuple[float, dict[str, Any]]:
    """A classifier's value over ``folds`` (predictions ``preds`` of each fold's validation items):
    ``1 - mean balanced accuracy`` (or ``value_of(error)``), the mean metrics with pooled bootstrap
    intervals, the per-fold values and their standard error, and with ``oof`` the out-of-fold
    predictions (:mod:`optileuk.folds`)."""
    from optileuk.metrics import fold_scores, scores
    from optileuk.folds import fold_attrs, oof_attr

    ds = data.ds
    n = len(ds.classes)
    ys = [ds.labels[f.val] for f in folds]
    per = [scores(y, p, n) for y, p in zip(ys, preds)]
    m = fold_scores(ys, preds, n, seed, per=per)
    value_of = value_of or (lambda error: error)
    value = value_of(1.0 - m["balanced_accuracy"])
    attrs = {**m, **(extra or {}), **fold_attrs([value_of(1.0 - s["balanced_accuracy"]) for s in per], folds),
             "split": split_text(folds, data.splits), "grouped": data.splits.grouped}
    if oof and folds is data.splits.folds:
        attrs["oof"] = oof_attr(data.splits.search, folds, preds, ds.labels, data.splits.repeats)
    return value, attrs
