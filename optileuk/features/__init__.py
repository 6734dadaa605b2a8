"""Feature extractors shared by the objectives."""

from optileuk.features._handcrafted import FEATURE_NAMES, handcrafted, handcrafted_features

__all__ = ["FEATURE_NAMES", "handcrafted", "handcrafted_features"]
