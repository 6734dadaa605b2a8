"""Leak-free splits: a held-out test split, then stratified (grouped) folds.

Groups (patient, subject, source image, smear) never straddle two splits. Augmentation happens
after the split, on training batches only (``optileuk.objectives._augment``), so no altered copy
of a validation or test image can reach training.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from optileuk.data._dataset import Dataset
from optileuk.data._loaders import DataWarning
from optileuk.errors import DataError


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_size: float = Field(0.2, ge=0, lt=1, description="share held out from the whole search (0 = none)")
    folds: int = Field(5, ge=1, description="k-fold CV on the rest; 1 = one hold-out validation split")
    repeats: int = Field(1, ge=1, le=50, description="repeated CV: each repeat another seeded (grouped, stratified) "
                         "partition of the search part into the folds; candidates are scored on all of them "
                         "(folds x repeats values; their mean is the value, their standard error is recorded)")
    val_size: float = Field(0.2, gt=0, lt=1, description="validation share when folds is 1")
    grouped: bool = Field(True, description="keep each group in one split when the data has groups")
    test_fold: int = Field(0, ge=0, description="with test_size 1/k: which of the k stratified parts is the test "
                           "split; 0, 1, ... in turn hold every image out once (outer cross-validation)")

    @field_validator("test_size", "val_size")
    @classmethod
    def _honoured(cls, v: float) -> float:
        if v > 0:
            m, k = _fraction(v)
            if abs(m / k - v) > TOLERANCE:
                raise ValueError(f"cannot be held out as stratified parts (at most {MAX_PARTS}); the nearest share "
                                 f"is {m}/{k} = {m / k:.3g}, got {v}")
        return v

    @field_validator("test_fold")
    @classmethod
    def _part_exists(cls, v: int, info: ValidationInfo) -> int:
        share = info.data.get("test_size", 0)
        if not v:
            return v
        m, k = _fraction(share) if share else (1, 1)
        if m != 1:
            raise ValueError(f"needs a test_size of 1/k (0.5, 0.333, 0.25, 0.2, ...) so that the k test splits do "
                             f"not overlap; test_size {share} is {m} of {k} parts, got {v}")
        if v >= k:
            raise ValueError(f"must be below {k} (test_size {share} makes {k} parts), got {v}")
        return v


MAX_PARTS = 20  # a share is held out as m of k <= 20 stratified (grouped) parts ...
TOLERANCE = 0.01  # ... within one percentage point of what was asked (the counts are reported)


@dataclass(frozen=True)
class Fold:
    train: np.ndarray
    val: np.ndarray
    repeat: int = 0  # which partition of the search part it belongs to (repeated CV)


@dataclass(frozen=True)
class Splits:
    """The held-out test split and the folds of the search part: ``repeats`` partitions of it into
    ``len(folds) // repeats`` folds each (repeat 0 first), every one grouped and stratified."""

    test: np.ndarray
    folds: list[Fold]
    grouped: bool
    repeats: int = 1

    @property
    def search(self) -> np.ndarray:
        """Everything the search may look at (all but the test split)."""
        return np.sort(np.concatenate([self.folds[0].train, self.folds[0].val]))

    @property
    def per_repeat(self) -> int:
        """Folds in one repeat (one partition of the search part)."""
        return len(self.folds) // self.repeats

    def sizes(self) -> dict[str, int]:
        """Images per split, as run summaries and metrics.json state them (train/validation: the first fold)."""
        out = {"test": len(self.test), "search": len(self.search), "train": len(self.folds[0].train),
               "validation": len(self.folds[0].val), "folds": self.per_repeat}
        if self.repeats > 1:
            out["repeats"] = self.repeats
        return out


def _fraction(share: float, max_parts: int = MAX_PARTS) -> tuple[int, int]:
    """(m, k): a held-out ``share`` is m of k stratified parts (the nearest fraction with k <= max_parts)."""
    f = Fraction(share).limit_denominator(max_parts)
    m, k = (f.numerator, f.denominator) if f.numerator else (1, max_parts)
    if m == k:  # a share near 1 with few parts: all but one
        m = k - 1
    return (m, k) if k >= 2 else (1, 2)


def _one_split(labels, groups, share: float, seed: int, where: str, names, part: int = 0,
               strict: bool = True, key: str = "split.test_size") -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) with ``held`` the asked ``share`` of the items: m of k stratified parts (m/k = share),
    starting at part ``part``; grouped, the share is met as closely as the group sizes allow."""
    m, k = _fraction(share)
    n_units = len(np.unique(groups)) if groups is not None else len(labels)
    unit = "groups" if groups is not None else "images"
    if strict and len(labels):  # stratified k-fold (grouped too) needs a class with k members at least
        largest = int(np.bincount(labels).max())
        if largest < n_units:
            n_units, unit = largest, "images in the largest class"
    if 2 <= n_units < k:  # fewer groups (or images) than parts: the nearest share they give, said aloud
        m, k = _fraction(share, max_parts=n_units)
        if part >= k:  # split.test_fold names a part these data cannot make
            raise DataError(f"{where}: split.test_fold {part} needs {key} {share} as 1 of {part + 1} or more parts; "
                            f"the {n_units} {unit} make {k}")
        if abs(m / k - share) > TOLERANCE:
            warnings.warn(f"{where}: {key} {share} needs more parts than {n_units} {unit} can fill; held out "
                          f"{m} of {k} parts ({m / k:.3g}) instead (the run summary counts them)", DataWarning,
                          stacklevel=3)
    # m of k parts: a class needs ceil(k/m) members to be held out and kept (k when m is 1, as for folds)
    with warnings.catch_warnings():  # classes smaller than k, allowed above: sklearn's note about them is expected
        warnings.filterwarnings("ignore", message="The least populated class", category=UserWarning)
        splits = list(_kfold(labels, groups, k, seed, where, names, strict, why=f"{key} {share} ({m} of {k} parts)",
                             need=-(-k // m)))
    held = np.sort(np.concatenate([splits[(part + j) % k][1] for j in range(m)]))
    rest = np.setdiff1d(np.arange(len(labels)), held)
    return rest, held


def _kfold(labels, groups, k: int, seed: int, where: str, names, strict: bool = True, why: str = "",
           need: int | None = None):
    need = k if need is None else need
    n_units = len(np.unique(groups)) if groups is not None else len(labels)
    if n_units < k:
        unit = "groups" if groups is not None else "images"
        raise DataError(f"{where}: {n_units} {unit} cannot make {k} splits{' for ' + why if why else ''} "
                        f"(need at least {k})")
    counts = np.bincount(labels, minlength=len(names))
    if not strict and any(0 < n < k for n in counts):  # classes only stratify, not learned: split unstratified
        return _splitter(labels, groups, np.zeros_like(labels), k, seed)
    small = [i for i, n in enumerate(counts) if 0 < n < need]
    if small and len(counts[counts > 0]) > 1:  # a class that cannot be spread over the k splits
        raise DataError(f"{where}: class(es) {', '.join(f'{names[i]} ({counts[i]} images)' for i in small)} "
                        f"cannot be stratified over {k} splits{' for ' + why if why else ''} (need at least {need} each); set "
                        f"dataset.min_per_class: {need} to drop them, or lower split.folds / raise split.test_size")
    return _splitter(labels, groups, labels, k, seed)


def _splitter(labels, groups, strat, k: int, seed: int):
    if groups is not None:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return cv.split(np.zeros(len(labels)), strat, groups)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cv.split(np.zeros(len(labels)), strat)


def make_splits(ds: Dataset, cfg: SplitConfig | None = None, *, seed: int = 0, classify: bool = True) -> Splits:
    """Test split first, then folds on the rest; grouped whenever ``ds.groups`` is known.

    Stratified by class. With ``classify`` (a classifier learns the classes) a class too small to
    be spread over the splits is refused with its name; otherwise (segmentation) the split is then
    made without stratification.

    Example:
        >>> ds = Dataset([np.zeros((2, 2, 3), np.uint8)] * 20, np.arange(20) % 2, ["a", "b"],
        ...              groups=np.arange(20) // 2)
        >>> s = make_splits(ds, SplitConfig(test_size=0.2, folds=2))
        >>> len(s.test) + len(s.folds[0].train) + len(s.folds[0].val)
        20
    """
    cfg = cfg or SplitConfig()
    counts = np.bincount(ds.labels, minlength=len(ds.classes)) if len(ds.labels) else np.zeros(len(ds.classes), int)
    present = [f"{c} ({n} images)" for c, n in zip(ds.classes, counts) if n > 0]
    if classify and len(present) < 2:  # one class: every classifier is trivially right (or fails)
        raise DataError(f"{ds.name or 'dataset'}: a classifier needs at least two classes with images; found "
                        f"{len(present)}: {', '.join(present) or 'none'}")
    groups = ds.groups if (cfg.grouped and ds.groups is not None) else None
    idx = np.arange(len(ds))
    where = ds.name or "dataset"
    if cfg.test_size > 0:
        rest, test = _one_split(ds.labels, groups, cfg.test_size, seed, where, ds.classes, cfg.test_fold, classify)
    else:
        rest, test = idx, np.array([], dtype=int)
    folds = [f for r in range(cfg.repeats) for f in inner_folds(ds, rest, cfg, seed, r, classify=classify,
                                                                   grouped=groups is not None)]
    return Splits(np.sort(test), folds, groups is not None, cfg.repeats)


def inner_folds(ds: Dataset, rest: np.ndarray, cfg: SplitConfig, seed: int, repeat: int, *, classify: bool = True,
                grouped: bool = True) -> list[Fold]:
    """The folds of repeat ``repeat`` of the search part ``rest`` (dataset indices): ``cfg.folds``
    stratified (grouped) folds, or one validation split of ``cfg.val_size`` when ``cfg.folds`` is 1.
    Repeat 0 is seeded ``seed + 1`` (the split of every study before repeats existed), repeat r
    ``seed + 1 + r``: a repeat beyond ``cfg.repeats`` is a new partition (what a race evaluates on)."""
    where = ds.name or "dataset"
    lab_r = ds.labels[rest]
    grp_r = ds.groups[rest] if (grouped and ds.groups is not None) else None
    s = seed + 1 + repeat
    if cfg.folds == 1:
        tr, va = _one_split(lab_r, grp_r, cfg.val_size, s, where, ds.classes, strict=classify, key="split.val_size")
        return [Fold(np.sort(rest[tr]), np.sort(rest[va]), repeat)]
    return [Fold(np.sort(rest[tr]), np.sort(rest[va]), repeat)
            for tr, va in _kfold(lab_r, grp_r, cfg.folds, s, where, ds.classes, classify)]


def outer_parts(ds: Dataset, k: int, *, seed: int = 0, classify: bool = True, grouped: bool = True) -> list[np.ndarray]:
    """The ``k`` outer parts of nested cross-validation: part ``i`` is exactly the test split that
    ``make_splits`` holds out with ``test_size: 1/k, test_fold: i`` (stratified; grouped by patient,
    slide or source image when the data say so), so every item is held out once.

    Data that cannot make ``k`` parts (fewer groups than ``k``; for a classifier a class with fewer
    items than ``k``) is refused with the reason, never silently given fewer parts.

    Example:
        >>> ds = Dataset([np.zeros((2, 2, 3), np.uint8)] * 20, np.arange(20) % 2, ["a", "b"])
        >>> parts = outer_parts(ds, 4)
        >>> sorted(np.concatenate(parts).tolist()) == list(range(20)), [len(p) for p in parts]
        (True, [5, 5, 5, 5])
    """
    where = ds.name or "dataset"
    if not 2 <= k <= MAX_PARTS:
        raise DataError(f"{where}: --outer must be between 2 and {MAX_PARTS}, got {k}")
    groups = ds.groups if (grouped and ds.groups is not None) else None
    n_groups = len(np.unique(groups)) if groups is not None else len(ds)
    if n_groups < k:
        unit = "groups (patients, slides or source images)" if groups is not None else "images"
        raise DataError(f"{where}: {n_groups} {unit} cannot make {k} outer parts (--outer {k}); use --outer "
                        f"{max(2, n_groups)} or fewer")
    counts = np.bincount(ds.labels, minlength=len(ds.classes))
    small = [f"{c} ({n})" for c, n in zip(ds.classes, counts) if 0 < n < k]
    if classify and small:
        raise DataError(f"{where}: class(es) {', '.join(small)} have fewer items than the {k} outer parts "
                        f"(--outer {k}): every part needs each class; use a smaller --outer or "
                        "dataset.min_per_class to drop them")
    parts = [np.sort(_one_split(ds.labels, groups, 1 / k, seed, where, ds.classes, i, classify)[1]) for i in range(k)]
    held = np.sort(np.concatenate(parts))
    if not np.array_equal(held, np.arange(len(ds))):  # a split that does not partition: never report on it
        raise DataError(f"{where}: the {k} outer parts do not hold every item out exactly once")
    return parts
