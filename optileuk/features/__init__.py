"""Feature extractors shared by the objectives."""

from optileuk.features._cells import CELL_FEATURES, GROUPS, measure_cell
from optileuk.features._handcrafted import FEATURE_NAMES, handcrafted, handcrafted_features

__all__ = ["CELL_FEATURES", "FEATURE_NAMES", "GROUPS", "handcrafted", "handcrafted_features", "measure_cell"]
