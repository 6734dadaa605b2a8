"""optileuk: tune leukemia-microscopy pipelines with metaheuristics and Bayesian optimization.

Every candidate any optimizer proposes is an Optuna trial in an Optuna storage.
"""

__version__ = "0.1.0"
