"""Genetic algorithm over DEAP's operators.

Tournament selection (``tools.selTournament``); real-coded coordinates use simulated binary
crossover and polynomial mutation (``cxSimulatedBinaryBounded``, ``mutPolynomialBounded``,
Deb's NSGA-II operators); bits use uniform crossover and bit-flip mutation (``cxUniform``,
``mutFlipBit``); the best ``elite`` individuals survive unchanged.
"""

from __future__ import annotations

import random
from typing import Any

import numpy as np
from deap import base, tools
from pydantic import Field, model_validator

from optileuk.optimizers._base import (
    Optimizer,
    OptimizerConfig,
    Registered,
    as_minimise,
    python_global_rng,
    seeded_states,
)


class GAConfig(OptimizerConfig):
    """Settings of :class:`GAOptimizer`."""

    population: int = Field(30, ge=2)
    tournament_size: int = Field(3, ge=1)
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: float = Field(0.2, ge=0, le=1, description="probability that an individual mutates")
    gene_mutation_prob: float | None = Field(None, ge=0, le=1, description="per-gene probability (default 1/dim)")
    eta_crossover: float = Field(15.0, gt=0, description="SBX distribution index")
    eta_mutation: float = Field(20.0, gt=0, description="polynomial mutation distribution index")
    elite: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "GAConfig":
        if self.elite >= self.population:
            raise ValueError(f"elite must be < population, got elite={self.elite}, population={self.population}")
        if self.tournament_size > self.population:
            raise ValueError(f"tournament_size must be <= population, got {self.tournament_size} > {self.population}")
        return self


class _Fitness(base.Fitness):
    weights = (-1.0,)  # the runner always minimises


class _Individual(list):
    def __init__(self, values):
        super().__init__(values)
        self.fitness = _Fitness()


class GAOptimizer(Optimizer):
    Config = GAConfig
    config: GAConfig

    def __init__(self, box, config, *, seed, max_generations=None):
        super().__init__(box, config, seed=seed, max_generations=max_generations)
        self._bits = np.flatnonzero(box.binary)
        self._real = np.flatnonzero(~box.binary)
        self._rng = seeded_states(seed)
        self._pop: list[_Individual] | None = None
        c = self.config
        self._indpb = c.gene_mutation_prob if c.gene_mutation_prob is not None else 1.0 / max(box.dim, 1)
        flat = box.upper <= box.lower  # SBX needs low < up
        self._up = np.where(flat, box.lower + 1e-12, box.upper)

    @property
    def population_size(self) -> int:
        return self.config.population

    def _evaluate(self, inds: list[_Individual], evaluate) -> None:
        if not inds:
            return
        values = as_minimise(evaluate(np.array(inds, dtype=float)))
        for ind, v in zip(inds, values):
            ind.fitness.values = (float(v),)

    def _vary(self, a: _Individual, b: _Individual) -> None:
        c = self.config
        lo, up = list(self.box.lower[self._real]), list(self._up[self._real])
        real_a, real_b = [a[i] for i in self._real], [b[i] for i in self._real]
        bits_a, bits_b = [a[i] for i in self._bits], [b[i] for i in self._bits]
        if random.random() < c.crossover_prob:
            if len(real_a) > 0:
                tools.cxSimulatedBinaryBounded(real_a, real_b, c.eta_crossover, lo, up)
            if len(bits_a) > 0:
                tools.cxUniform(bits_a, bits_b, 0.5)
            del a.fitness.values, b.fitness.values
        for ind, real, bits in ((a, real_a, bits_a), (b, real_b, bits_b)):
            if random.random() < c.mutation_prob:
                if real:
                    tools.mutPolynomialBounded(real, c.eta_mutation, lo, up, self._indpb)
                if bits:
                    tools.mutFlipBit(bits, self._indpb)
                if ind.fitness.valid:
                    del ind.fitness.values
            for j, i in enumerate(self._real):
                ind[i] = float(real[j])
            for j, i in enumerate(self._bits):
                ind[i] = float(bits[j])

    def step(self, evaluate) -> None:
        c = self.config
        if self._pop is None:
            with python_global_rng(self._rng):
                x = self.box.uniform(np.random.default_rng(random.getrandbits(63)), c.population)
            self._pop = [_Individual(row.tolist()) for row in x]
            self._evaluate(self._pop, evaluate)
            return
        with python_global_rng(self._rng):
            parents = tools.selTournament(self._pop, len(self._pop), tournsize=c.tournament_size)
            offspring = [_Individual(list(p)) for p in parents]
            for o, p in zip(offspring, parents):
                o.fitness.values = p.fitness.values
            for a, b in zip(offspring[::2], offspring[1::2]):
                self._vary(a, b)
            if len(offspring) % 2:  # the odd one out may still mutate
                self._vary(offspring[-1], _Individual(list(offspring[-1])))
        fresh = [o for o in offspring if not o.fitness.valid]
        self._evaluate(fresh, evaluate)
        elite = tools.selBest(self._pop, c.elite) if c.elite else []
        survivors = tools.selBest(offspring, len(offspring) - len(elite))
        self._pop = [_Individual(list(e)) for e in elite] + survivors
        for new, old in zip(self._pop[: len(elite)], elite):
            new.fitness.values = old.fitness.values

    def state_dict(self) -> dict[str, Any]:
        pop = None if self._pop is None else [(list(i), i.fitness.values) for i in self._pop]
        return {"rng": self._rng, "pop": pop}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = state["rng"]
        self._pop = None
        if state["pop"] is not None:
            self._pop = []
            for genes, fit in state["pop"]:
                ind = _Individual(genes)
                ind.fitness.values = tuple(fit)
                self._pop.append(ind)


GA = Registered(GAOptimizer, summary="genetic algorithm (DEAP): tournament, SBX + polynomial mutation, bit-flip, elitism")
