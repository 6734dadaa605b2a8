"""Leak-free splits: a held-out test split, then stratified (grouped) folds; augmentation only in training.

Groups (patient, subject, source image, smear) never straddle two splits. Augmented copies are
made from training images of one fold only, after the split, so no copy of a validation or test
image can reach training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from optileuk.data._dataset import Dataset
from optileuk.errors import DataError


class SplitConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    test_size: float = Field(0.2, ge=0, lt=1, description="share held out from the whole search (0 = none)")
    folds: int = Field(5, ge=1, description="k-fold CV on the rest; 1 = one hold-out validation split")
    val_size: float = Field(0.2, gt=0, lt=1, description="validation share when folds is 1")
    grouped: bool = Field(True, description="keep each group in one split when the data has groups")


@dataclass(frozen=True)
class Fold:
    train: np.ndarray
    val: np.ndarray


@dataclass(frozen=True)
class Splits:
    test: np.ndarray
    folds: list[Fold]
    grouped: bool

    @property
    def search(self) -> np.ndarray:
        """Everything the search may look at (all but the test split)."""
        return np.sort(np.concatenate([self.folds[0].train, self.folds[0].val]))


def _one_split(labels, groups, share: float, seed: int, where: str) -> tuple[np.ndarray, np.ndarray]:
    """(rest, held) with ``held`` about ``share`` of the items."""
    k = max(2, int(round(1 / share)))
    splits = list(_kfold(labels, groups, k, seed, where))
    rest, held = splits[0]
    return rest, held


def _kfold(labels, groups, k: int, seed: int, where: str):
    n_units = len(np.unique(groups)) if groups is not None else len(labels)
    if n_units < k:
        unit = "groups" if groups is not None else "images"
        raise DataError(f"{where}: {n_units} {unit} cannot make {k} splits (need at least {k})")
    # stratify only on classes that can be spread over the k splits
    counts = np.bincount(labels)
    strat = labels if counts[counts > 0].min() >= k else np.zeros_like(labels)
    if groups is not None:
        cv = StratifiedGroupKFold(n_splits=k, shuffle=True, random_state=seed)
        return cv.split(np.zeros(len(labels)), strat, groups)
    cv = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    return cv.split(np.zeros(len(labels)), strat)


def make_splits(ds: Dataset, cfg: SplitConfig | None = None, *, seed: int = 0) -> Splits:
    """Test split first, then folds on the rest; grouped whenever ``ds.groups`` is known.

    Example:
        >>> ds = Dataset([np.zeros((2, 2, 3), np.uint8)] * 20, np.arange(20) % 2, ["a", "b"],
        ...              groups=np.arange(20) // 2)
        >>> s = make_splits(ds, SplitConfig(test_size=0.2, folds=2))
        >>> len(s.test) + len(s.folds[0].train) + len(s.folds[0].val)
        20
    """
    cfg = cfg or SplitConfig()
    groups = ds.groups if (cfg.grouped and ds.groups is not None) else None
    idx = np.arange(len(ds))
    where = ds.name or "dataset"
    if cfg.test_size > 0:
        rest, test = _one_split(ds.labels, groups, cfg.test_size, seed, where)
    else:
        rest, test = idx, np.array([], dtype=int)
    lab_r = ds.labels[rest]
    grp_r = None if groups is None else groups[rest]
    if cfg.folds == 1:
        tr, va = _one_split(lab_r, grp_r, cfg.val_size, seed + 1, where)
        folds = [Fold(np.sort(rest[tr]), np.sort(rest[va]))]
    else:
        folds = [Fold(np.sort(rest[tr]), np.sort(rest[va])) for tr, va in _kfold(lab_r, grp_r, cfg.folds, seed + 1, where)]
    return Splits(np.sort(test), folds, groups is not None)


class AugmentConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)
    copies: int = Field(0, ge=0, le=32, description="augmented copies per training image (0 = off)")
    flips: bool = True
    rot90: bool = True
    colour_jitter: float = Field(0.05, ge=0, le=0.5)


def augment_training(ds: Dataset, train_idx: np.ndarray, cfg: AugmentConfig, rng: np.random.Generator) -> tuple[Dataset, np.ndarray]:
    """The training images of one fold plus ``copies`` augmented copies of each.

    Returns the training dataset and, per image in it, the index of its source image in ``ds``
    (so tests and users can check that every image comes from ``train_idx``).
    """
    train_idx = np.asarray(train_idx, dtype=int)
    base = ds.subset(train_idx)
    if cfg.copies == 0:
        return base, train_idx
    images, masks, labels, src = list(base.images), None if base.masks is None else list(base.masks), [], []
    for c in range(cfg.copies):
        for j, i in enumerate(train_idx):
            img, mask = ds.images[i], None if ds.masks is None else ds.masks[i]
            k = int(rng.integers(0, 4)) if cfg.rot90 else 0
            flip = bool(rng.integers(0, 2)) if cfg.flips else False
            img = np.rot90(img, k)
            mask = None if mask is None else np.rot90(mask, k)
            if flip:
                img, mask = img[:, ::-1], None if mask is None else mask[:, ::-1]
            if cfg.colour_jitter:
                gain = 1 + rng.normal(0, cfg.colour_jitter, 3)
                img = np.clip(img.astype(np.float32) * gain, 0, 255).astype(np.uint8)
            images.append(np.ascontiguousarray(img))
            if masks is not None:
                masks.append(np.ascontiguousarray(mask))
            labels.append(ds.labels[i])
            src.append(i)
    out = Dataset(images, np.concatenate([base.labels, np.array(labels, dtype=np.int64)]), ds.classes, masks,
                  None if base.groups is None else np.concatenate([base.groups, ds.groups[src]]),
                  None, name=ds.name + " (augmented training fold)")
    return out, np.concatenate([train_idx, np.array(src, dtype=int)])


def final_parts(ds: Dataset, cfg: SplitConfig, augment: AugmentConfig, seed: int) -> tuple[Splits, Dataset, Dataset]:
    """The data of a final fit: the whole search part (training + validation, augmented as in the
    search) to train on, and the test split — the same one the search held out — to score once."""
    splits = make_splits(ds, cfg, seed=seed)
    train, _ = augment_training(ds, splits.search, augment, np.random.default_rng(seed))
    return splits, train, ds.subset(splits.test)
