"""Genetic algorithm over DEAP's operators.

Tournament selection (``tools.selTournament``); real-coded coordinates use simulated binary
crossover and polynomial mutation (``cxSimulatedBinaryBounded``, ``mutPolynomialBounded``,
Deb's NSGA-II operators); bits use uniform crossover and bit-flip mutation (``cxUniform``,
``mutFlipBit``); the best ``elite`` individuals survive unchanged.

Asynchronously (``runner: {mode: async}``) it is a steady-state GA: after ``population`` random
individuals, each free worker gets a child of two tournament-selected parents (the second child
of a pair is the next one handed out), and a returning child replaces the worst individual of
the population if it is better (so the best always survive).
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
    supports_async = True

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
        # asynchronous (steady-state) mode
        self._asked: dict[int, list[float]] = {}
        self._spare: list[float] | None = None
        self._next = 0
        self._initial = 0  # random individuals handed out so far

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

    # ---- asynchronous: steady state ----------------------------------------------------------
    def ask(self):
        c = self.config
        with python_global_rng(self._rng):
            if self._initial < c.population:
                genes = self.box.uniform(np.random.default_rng(random.getrandbits(63)), 1)[0].tolist()
                self._initial += 1
            elif self._spare is not None:
                genes, self._spare = self._spare, None
            elif self._pop is not None and len(self._pop) >= 2:
                a, b = (_Individual(list(p)) for p in tools.selTournament(self._pop, 2, tournsize=c.tournament_size))
                self._vary(a, b)
                genes, self._spare = self._distinct(a), self._distinct(b)
            else:
                return None  # the first individuals are still being evaluated
        token, self._next = self._next, self._next + 1
        self._asked[token] = genes
        return token, np.array(genes, dtype=float), {}

    def _distinct(self, child: _Individual) -> list[float]:
        """A child that repeats an individual of the population (or one being evaluated) is mutated
        until it differs: a steady-state population of copies would stop searching."""
        seen = [list(p) for p in self._pop] + list(self._asked.values())
        for _ in range(20):
            if list(child) not in seen:
                break
            self._mutate_hard(child)
        return list(child)

    def _mutate_hard(self, child: list) -> None:
        """Mutate every coordinate with at least probability 1/2 (bits: at least one flip expected),
        in place: how a child that repeats another is made to differ."""
        c = self.config
        lo, up = list(self.box.lower[self._real]), list(self._up[self._real])
        real, bits = [child[i] for i in self._real], [child[i] for i in self._bits]
        if real:
            tools.mutPolynomialBounded(real, c.eta_mutation, lo, up, max(self._indpb, 0.5))
        if bits:
            tools.mutFlipBit(bits, max(self._indpb, 1.0 / max(len(bits), 1)))
        for j, i in enumerate(self._real):
            child[i] = float(real[j])
        for j, i in enumerate(self._bits):
            child[i] = float(bits[j])

    def tell(self, token: int, value: float) -> None:
        self._insert(self._asked.pop(token), value)

    def pending(self) -> dict[int, np.ndarray]:
        return {t: np.array(g, dtype=float) for t, g in self._asked.items()}

    def inject(self, x, value, info) -> None:
        self._insert([float(v) for v in x], value)

    def _insert(self, genes: list[float], value: float) -> None:
        ind = _Individual(genes)
        ind.fitness.values = (float(value),)
        self._pop = (self._pop or []) + [ind]
        if len(self._pop) > self.config.population:
            worst = tools.selWorst(self._pop, 1)[0]
            self._pop = [p for p in self._pop if p is not worst]

    def state_dict(self) -> dict[str, Any]:
        pop = None if self._pop is None else [(list(i), i.fitness.values) for i in self._pop]
        return {"rng": self._rng, "pop": pop, "asked": dict(self._asked), "spare": self._spare, "next": self._next,
                "initial": self._initial}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = state["rng"]
        self._asked = dict(state.get("asked", {}))
        self._spare, self._next, self._initial = state.get("spare"), state.get("next", 0), state.get("initial", 0)
        self._pop = None
        if state["pop"] is not None:
            self._pop = []
            for genes, fit in state["pop"]:
                ind = _Individual(genes)
                ind.fitness.values = tuple(fit)
                self._pop.append(ind)


GA = Registered(GAOptimizer, summary="genetic algorithm (DEAP): tournament, SBX + polynomial mutation, bit-flip, elitism")
