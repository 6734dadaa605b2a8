"""Data: the embedded synthetic smear generator, loaders for the field's layouts, leak-free splits."""

from __future__ import annotations

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
from optileuk.data._splits import AugmentConfig, Fold, SplitConfig, Splits, augment_training, final_parts, make_splits

_LOADERS = {"synthetic": synthetic, "folders": load_folders, "all_idb1": load_all_idb1, "all_idb2": load_all_idb2,
            "cnmc": load_cnmc, "pairs": load_pairs}


def load_dataset(cfg) -> Dataset:
    """Load the dataset a validated dataset config describes.

    Example:
        >>> ds = load_dataset(SyntheticData(type="synthetic", n_per_class=1, size=32))
        >>> ds.counts()
        {'normal': 1, 'L1': 1, 'L2': 1, 'L3': 1}
    """
    return _LOADERS[cfg.type](cfg)


__all__ = ["AllIdb1Data", "AllIdb2Data", "AugmentConfig", "CnmcData", "DataWarning", "Dataset", "DatasetConfig",
           "Fold", "FoldersData", "PairsData", "RealismConfig", "SplitConfig", "Splits", "SyntheticData",
           "augment_training", "final_parts", "load_dataset", "make_splits", "read_image", "synthetic"]
