"""Objectives: each is a plain Optuna objective and has ``evaluate(config)`` for the runner.

Example:
    >>> import optuna
    >>> from optileuk.space import SearchSpace
    >>> space = SearchSpace.from_dict({"parameters": {"x": {"type": "float", "low": -1, "high": 1}}})
    >>> objective = make("analytic", {"function": "sphere"}, space=space)
    >>> study = optuna.create_study()
    >>> study.optimize(objective, n_trials=5)
    >>> len(study.trials)
    5
"""

from __future__ import annotations

from typing import Any, Mapping

from optileuk.errors import ConfigError, Problem
from optileuk.objectives._analytic import AnalyticObjective
from optileuk.objectives._base import ClassifiesCells, Device, Objective, ObjectiveConfig, Score, preparing
from optileuk.registry import OBJECTIVES


def make(type: str, config: Mapping[str, Any] | None = None, *, space=None, seed: int = 0,
         objectives=None) -> Objective:
    """Build a registered objective by its study-file ``type`` (built-in or plug-in); ``objectives``
    names the values to optimize together (e.g. ``["error", "head_params"]``)."""
    found = OBJECTIVES.resolve(type)
    if found is None:
        raise ConfigError([Problem("", "objective.type", f"must be one of {', '.join(OBJECTIVES.names())}", type)])
    return found[0](config or {}, space=space, seed=seed, objectives=objectives)


def __getattr__(name: str):
    if name == "resolve_device":  # torch: imported when first asked for
        from optileuk.objectives._torch import resolve_device

        return resolve_device
    if name in ("Prepared", "prepare_images"):  # the data part (scikit-learn): imported when first asked for
        from optileuk.objectives import _inputs

        return getattr(_inputs, name)
    if name == "EnsembleModel":
        from optileuk.objectives._model import EnsembleModel

        return EnsembleModel
    if name == "NO_TEST":
        from optileuk.objectives._final import NO_TEST

        return NO_TEST
    raise AttributeError(f"module 'optileuk.objectives' has no attribute {name!r}")


__all__ = ["AnalyticObjective", "ClassifiesCells", "Device", "EnsembleModel", "NO_TEST", "Objective", "ObjectiveConfig", "Prepared", "Score",
           "make", "prepare_images", "preparing", "resolve_device"]
