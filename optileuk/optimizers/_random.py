"""Uniform random search: the baseline every other optimizer must beat."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from optileuk.optimizers._base import Optimizer, OptimizerConfig, Registered


class RandomConfig(OptimizerConfig):
    population: int = Field(10, ge=1, description="candidates per generation")


class RandomOptimizer(Optimizer):
    """Draws ``population`` points uniformly in the box per generation (bits 0/1 with p=1/2)."""

    Config = RandomConfig
    config: RandomConfig

    def __init__(self, box, config, *, seed, max_generations=None):
        super().__init__(box, config, seed=seed, max_generations=max_generations)
        self._rng = np.random.default_rng(seed)

    @property
    def population_size(self) -> int:
        return self.config.population

    def step(self, evaluate) -> None:
        evaluate(self.box.uniform(self._rng, self.config.population))

    def state_dict(self) -> dict[str, Any]:
        return {"rng": self._rng.bit_generator.state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng.bit_generator.state = state["rng"]


RANDOM = Registered(RandomOptimizer, summary="uniform random search (baseline)")
