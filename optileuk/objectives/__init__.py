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

from optileuk.objectives._analytic import AnalyticObjective
from optileuk.objectives._base import Objective, ObjectiveConfig, Score


def make(type: str, config: Mapping[str, Any] | None = None, *, space=None, seed: int = 0,
         objectives=None) -> Objective:
    """Build a registered objective by its study-file ``type`` (built-in or plug-in); ``objectives``
    names the values to optimize together (e.g. ``["error", "head_params"]``)."""
    from optileuk.errors import ConfigError, Problem
    from optileuk.registry import OBJECTIVES

    found = OBJECTIVES.resolve(type)
    if found is None:
        raise ConfigError([Problem("", "objective.type", f"must be one of {', '.join(OBJECTIVES.names())}", type)])
    return found[0](config or {}, space=space, seed=seed, objectives=objectives)


__all__ = ["AnalyticObjective", "Objective", "ObjectiveConfig", "Score", "make"]
