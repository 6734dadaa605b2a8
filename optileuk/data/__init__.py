"""Data: the embedded synthetic smear generator, loaders for the field's layouts, leak-free splits."""

from __future__ import annotations

import warnings
from dataclasses import replace

import numpy as np

from optileuk.data._config import (
    AllIdb1Data,
    AllIdb2Data,
    CnmcData,
    DatasetConfig,
    FoldersData,
    PairsData,
    RealismConfig,
    SyntheticData,
)
from optileuk.data._dataset import Dataset
from optileuk.data._generate import synthetic
from optileuk.data._loaders import DataWarning, load_all_idb1, load_all_idb2, load_cnmc, load_folders, load_pairs, read_image
from optileuk.errors import DataError
from optileuk.data._splits import Fold, SplitConfig, Splits, make_splits

_LOADERS = {"synthetic": synthetic, "folders": load_folders, "all_idb1": load_all_idb1, "all_idb2": load_all_idb2,
            "cnmc": load_cnmc, "pairs": load_pairs}


def load_dataset(cfg) -> Dataset:
    """Load the dataset a validated dataset config describes.

    Example:
        >>> ds = load_dataset(SyntheticData(type="synthetic", n_per_class=1, size=32))
        >>> ds.counts()
        {'normal': 1, 'L1': 1, 'L2': 1, 'L3': 1}
    """
    ds = _LOADERS[cfg.type](cfg)
    return drop_small_classes(ds, getattr(cfg, "min_per_class", 0))


def drop_small_classes(ds: Dataset, min_per_class: int) -> Dataset:
    """``ds`` without the classes that have fewer than ``min_per_class`` images (a warning names
    them); the classes left are renumbered in their order.

    Example:
        >>> ds = Dataset([np.zeros((2, 2, 3), np.uint8)] * 5, np.array([0, 0, 0, 1, 2]), ["a", "b", "c"])
        >>> import warnings
        >>> with warnings.catch_warnings():
        ...     warnings.simplefilter("ignore")
        ...     drop_small_classes(ds, 2).counts()
        {'a': 3}
    """
    counts = np.bincount(ds.labels, minlength=len(ds.classes))
    small = [i for i, n in enumerate(counts) if n < min_per_class]
    if not small:
        return ds
    keep = [i for i in range(len(ds.classes)) if i not in small]
    if not keep:
        raise DataError(f"{ds.name}: dataset.min_per_class {min_per_class} drops every class "
                        f"({', '.join(f'{c} {n}' for c, n in zip(ds.classes, counts))})")
    warnings.warn(f"{ds.name}: dropped classes with fewer than {min_per_class} images (dataset.min_per_class): "
                  + ", ".join(f"{ds.classes[i]} ({counts[i]})" for i in small), DataWarning, stacklevel=3)
    out = ds.subset(np.flatnonzero(np.isin(ds.labels, keep)))
    renumber = np.full(len(ds.classes), -1)
    renumber[keep] = np.arange(len(keep))
    return replace(out, labels=renumber[out.labels], classes=[ds.classes[i] for i in keep])


__all__ = ["AllIdb1Data", "AllIdb2Data", "CnmcData", "DataWarning", "Dataset", "DatasetConfig",
           "Fold", "FoldersData", "PairsData", "RealismConfig", "SplitConfig", "Splits", "SyntheticData",
           "drop_small_classes", "load_dataset", "make_splits", "read_image", "synthetic"]
