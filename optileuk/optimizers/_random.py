"""Uniform random search: the baseline every other optimizer must beat."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from optileuk.optimizers._base import Optimizer, OptimizerConfig, Registered


class RandomConfig(OptimizerConfig):
    population: int = Field(10, ge=1, description="candidates per generation")


class RandomOptimizer(Optimizer):
    """Draws ``population`` points uniformly in the box per generation (bits 0/1 with p=1/2);
    asynchronously, one point per free worker."""

    Config = RandomConfig
    config: RandomConfig
    supports_async = True
    multi_objective = True  # it learns nothing from values, however many: the baseline of every study

    def __init__(self, box, config, *, seed, max_generations=None, objectives: int = 1):
        super().__init__(box, config, seed=seed, max_generations=max_generations, objectives=objectives)
        self._rng = np.random.default_rng(seed)
        self._pending: dict[int, np.ndarray] = {}
        self._next = 0

    @property
    def population_size(self) -> int:
        return self.config.population

    def step(self, evaluate) -> None:
        evaluate(self.box.uniform(self._rng, self.config.population))

    def ask(self):
        token, self._next = self._next, self._next + 1
        self._pending[token] = self.box.uniform(self._rng, 1)[0]
        return token, self._pending[token], {}

    def tell(self, token: int, value: float) -> None:
        self._pending.pop(token, None)

    def pending(self) -> dict[int, np.ndarray]:
        return dict(self._pending)

    def inject(self, x, value, info) -> None:
        pass  # random search learns nothing from results

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state, "pending": dict(self._pending), "next": self._next}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]
        self._pending = dict(state.get("pending", {}))
        self._next = state.get("next", 0)


RANDOM = Registered(RandomOptimizer, summary="uniform random search (baseline)")
