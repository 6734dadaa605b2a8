"""Optimizer adapters (pyswarms, DEAP, mealpy, Optuna TPE, random) behind one ``step(evaluate)`` contract."""

from optileuk.optimizers._base import Evaluate, Optimizer, OptimizerConfig, Registered

__all__ = ["Evaluate", "Optimizer", "OptimizerConfig", "Registered"]
