"""NSGA-II and NSGA-III over DEAP's operators, for multi-objective studies.

Variation is the GA's (:mod:`optileuk.optimizers._ga`): simulated binary crossover and polynomial
mutation on real coordinates, uniform crossover and bit flips on bits. Survival is DEAP's
``selNSGA2`` (non-dominated sorting, then crowding distance; Deb et al. 2002) or ``selNSGA3``
(non-dominated sorting, then niching around Das-Dennis reference points; Deb & Jain 2014) over
parents and offspring together. Parents are chosen by binary tournament on (front, crowding
distance) for NSGA-II and at random for NSGA-III, as in the papers. Every value is minimised
(the runner orients them).
"""

from __future__ import annotations

import math
import random
from typing import Any, Literal

import numpy as np
from deap import base, tools
from pydantic import Field, model_validator

from optileuk.optimizers._base import Optimizer, OptimizerConfig, Registered, numpy_global_rng, python_global_rng
from optileuk.optimizers._ga import GAOptimizer


class NSGAConfig(OptimizerConfig):
    """Settings of :class:`NSGAOptimizer`."""

    population: int = Field(40, ge=4)
    selection: Literal["nsga2", "nsga3"] = "nsga2"
    crossover_prob: float = Field(0.9, ge=0, le=1)
    mutation_prob: float = Field(0.2, ge=0, le=1, description="probability that an individual mutates")
    gene_mutation_prob: float | None = Field(None, ge=0, le=1, description="per-gene probability (default 1/dim)")
    eta_crossover: float = Field(15.0, gt=0, description="SBX distribution index")
    eta_mutation: float = Field(20.0, gt=0, description="polynomial mutation distribution index")
    reference_divisions: int | None = Field(None, ge=1, description="NSGA-III: divisions per objective of the "
                                            "reference points (default: as many points as fit the population)")

    @model_validator(mode="after")
    def _check(self) -> "NSGAConfig":
        if self.reference_divisions is not None and self.selection != "nsga3":
            raise ValueError("reference_divisions is for selection: nsga3")
        return self


class NSGAOptimizer(GAOptimizer):
    Config = NSGAConfig
    config: NSGAConfig
    supports_async = False
    multi_objective = True

    def __init__(self, box, config, *, seed, max_generations=None, objectives: int = 1):
        super().__init__(box, config, seed=seed, max_generations=max_generations)
        self.objectives = objectives
        self._fitness = type(f"_Fitness{objectives}", (base.Fitness,), {"weights": (-1.0,) * objectives})
        self._refs = None
        if config.selection == "nsga3":
            p = config.reference_divisions or _divisions(objectives, config.population)
            self._refs = tools.uniform_reference_points(objectives, p)

    def _individual(self, genes) -> list:
        ind = _Ind(genes)
        ind.fitness = self._fitness()
        return ind

    def _evaluate(self, inds, evaluate) -> None:
        if not inds:
            return
        values = np.asarray(evaluate(np.array(inds, dtype=float)), dtype=float).reshape(len(inds), self.objectives)
        for ind, v in zip(inds, values):
            ind.fitness.values = tuple(float(x) for x in v)

    def _survivors(self, inds: list, k: int) -> list:
        if self._refs is not None and self.objectives > 1:  # one value has no reference directions: NSGA-II
            return tools.selNSGA3(inds, k, self._refs)
        return tools.selNSGA2(inds, k)

    def _parents(self, n: int) -> list:
        pop = self._pop
        if self._refs is not None:
            return tools.selRandom(pop, n)
        order = {}
        for rank, front in enumerate(tools.sortNondominated(pop, len(pop))):
            tools.emo.assignCrowdingDist(front)
            for ind in front:
                order[id(ind)] = (rank, -ind.fitness.crowding_dist)
        picks = []
        for _ in range(n):
            a, b = pop[random.randrange(len(pop))], pop[random.randrange(len(pop))]
            picks.append(a if order[id(a)] <= order[id(b)] else b)
        return picks

    def step(self, evaluate) -> None:
        c = self.config
        if self._pop is None:
            with python_global_rng(self._rng):
                x = self.box.uniform(np.random.default_rng(random.getrandbits(63)), c.population)
            self._pop = [self._individual(row.tolist()) for row in x]
            self._evaluate(self._pop, evaluate)
            return
        with python_global_rng(self._rng):
            offspring = []
            for p in self._parents(c.population):
                child = self._individual(list(p))
                child.fitness.values = p.fitness.values
                offspring.append(child)
            for a, b in zip(offspring[::2], offspring[1::2]):
                self._vary(a, b)
            if len(offspring) % 2:
                self._vary(offspring[-1], self._individual(list(offspring[-1])))
            self._spread(offspring)
        self._evaluate([o for o in offspring if not o.fitness.valid], evaluate)
        # NSGA-III's niching shuffles with numpy's global RNG: both global RNGs are the adapter's own here
        with python_global_rng(self._rng), numpy_global_rng(self._rng):
            self._pop = self._survivors(self._pop + offspring, c.population)

    def _key(self, genes) -> tuple:
        """What a candidate decodes to, roughly: int and choice coordinates floored, bits, reals to 1e-9
        of their range (two genes with the same key are the same candidate)."""
        g = np.asarray(genes, dtype=float)
        span = np.where(self.box.upper > self.box.lower, self.box.upper - self.box.lower, 1.0)
        k = np.where(np.isin(np.array(self.box.kinds), ("int", "choice")), np.floor(g),
                     np.round((g - self.box.lower) / span, 9))
        return tuple(k.tolist())

    def _spread(self, offspring: list) -> None:
        """Children that repeat a member of the population (or an earlier child) are mutated until
        they differ: with elitist survival, copies of the best would otherwise spend the budget on
        candidates already evaluated (seeded objectives give them the same values)."""
        seen = {self._key(p) for p in self._pop}
        for child in offspring:
            for _ in range(20):
                if self._key(child) not in seen:
                    break
                self._mutate_hard(child)
                if child.fitness.valid:
                    del child.fitness.values
            seen.add(self._key(child))

    def state_dict(self) -> dict[str, Any]:
        pop = None if self._pop is None else [(list(i), list(i.fitness.values)) for i in self._pop]
        return {"rng": self._rng, "pop": pop}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = state["rng"]
        self._pop = None
        if state["pop"] is not None:
            self._pop = []
            for genes, fit in state["pop"]:
                ind = self._individual(genes)
                ind.fitness.values = tuple(fit)
                self._pop.append(ind)

    # the steady-state GA's asynchronous mode is not NSGA's
    ask, tell, pending, inject = Optimizer.ask, Optimizer.tell, Optimizer.pending, Optimizer.inject


class _Ind(list):
    pass


def _divisions(m: int, population: int) -> int:
    """The most divisions whose Das-Dennis reference points (C(p + m - 1, m - 1)) fit the population."""
    if m < 2:
        return 1
    p = 1
    while math.comb(p + 1 + m - 1, m - 1) <= population:
        p += 1
    return p


NSGA2 = Registered(NSGAOptimizer, {"selection": "nsga2"},
                   summary="NSGA-II (DEAP): multi-objective, non-dominated sorting + crowding distance")
NSGA3 = Registered(NSGAOptimizer, {"selection": "nsga3"},
                   summary="NSGA-III (DEAP): multi-objective, non-dominated sorting + reference points")
