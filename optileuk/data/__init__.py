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
from optileuk.data._cache import cached, cached_arrays
from optileuk.data._dataset import Dataset
from optileuk.data._duplicates import CORRELATION, NEAR, exact_sets, merge_duplicates, near_pairs
from optileuk.data._generate import synthetic
from optileuk.data._splits import Fold, SplitConfig, Splits, inner_folds, make_splits, outer_parts
from optileuk.data._stain import Stain, StainNormaliser, stain_jitter_od
from optileuk.errors import DataError
from optileuk.data._loaders import (IMAGE_EXT, ChannelsError, DataWarning, as_rgb, image_mask_pairs, load_all_idb1,
                                    load_all_idb2, load_cnmc, load_folders, load_pairs, read_image, read_labels,
                                    read_mask)

_LOADERS = {"synthetic": synthetic, "folders": load_folders, "all_idb1": load_all_idb1, "all_idb2": load_all_idb2,
            "cnmc": load_cnmc, "pairs": load_pairs}


def load_dataset(cfg) -> Dataset:
    """Load the dataset a validated dataset config describes. Exact and near-identical images are
    put in one group (:func:`merge_duplicates`), so no split ever trains on one copy and scores the
    other; ``ds.duplicates`` says how many were merged.

    Example:
        >>> ds = load_dataset(SyntheticData(type="synthetic", n_per_class=1, size=32))
        >>> ds.counts()
        {'normal': 1, 'L1': 1, 'L2': 1, 'L3': 1}
    """
    ds = drop_small_classes(_LOADERS[cfg.type](cfg), getattr(cfg, "min_per_class", 0))
    return merge_duplicates(ds)


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


_GEOMETRY = ("Resize", "from_square", "square_image", "to_square")  # torch: imported when first asked for


def __getattr__(name: str):
    if name in _GEOMETRY:
        from optileuk.data import _geometry

        return getattr(_geometry, name)
    raise AttributeError(f"module 'optileuk.data' has no attribute {name!r}")


__all__ = ["CORRELATION", "NEAR", "AllIdb1Data", "AllIdb2Data", "ChannelsError", "CnmcData", "DataWarning", "Dataset", "DatasetConfig",
           "Fold", "FoldersData", "IMAGE_EXT", "PairsData", "RealismConfig", "Resize", "SplitConfig", "Splits", "Stain",
           "StainNormaliser", "SyntheticData", "as_rgb", "cached", "cached_arrays", "drop_small_classes", "exact_sets",
           "from_square", "image_mask_pairs", "inner_folds", "load_dataset", "make_splits", "merge_duplicates", "near_pairs", "outer_parts", "read_image",
           "read_labels", "read_mask", "square_image", "stain_jitter_od", "synthetic", "to_square"]
