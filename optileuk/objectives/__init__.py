"""Objectives: each is a plain Optuna objective and has ``evaluate(config)`` for the runner."""

from optileuk.objectives._base import Objective, ObjectiveConfig, Score

__all__ = ["Objective", "ObjectiveConfig", "Score"]
