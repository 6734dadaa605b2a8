"""Particle swarm optimisation over pyswarms' backend operators.

The swarm moves in the unit cube (each box coordinate scaled to [0, 1]) so one velocity clamp
fits coordinates of any range. Bits (masks, booleans) use binary PSO: a bit is 1 when a uniform
draw is below ``sigmoid(velocity)`` (Kennedy & Eberhart 1997, as pyswarms' ``BinaryPSO``).
Topologies: ``global`` (pyswarms ``Star``) and ``ring`` (pyswarms ``Ring``, ``k`` neighbours).

Asynchronously (``runner: {mode: async}``) a particle moves as soon as its own evaluation is
back, towards its personal best and the best known at that moment (asynchronous PSO, Venter &
Sobieszczanski-Sobieski 2006); a free worker gets the next particle that is not in flight.
"""

from __future__ import annotations

import contextlib
import copy
import os
from pathlib import Path
from typing import Any, Iterator, Literal

import numpy as np
from pydantic import Field, model_validator

from optileuk.optimizers._base import (
    Optimizer,
    OptimizerConfig,
    Registered,
    as_minimise,
    numpy_global_rng,
    seeded_states,
)


@contextlib.contextmanager
def quiet_pyswarms() -> Iterator[None]:
    """Build pyswarms objects without its logging side effects (``./report.log``, root handlers)."""
    saved = os.environ.get("LOG_CFG")
    os.environ["LOG_CFG"] = str(Path(__file__).with_name("_pyswarms_logging.yaml"))
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("LOG_CFG", None)
        else:
            os.environ["LOG_CFG"] = saved


with quiet_pyswarms():
    from pyswarms.backend import compute_pbest, compute_position, compute_velocity, create_swarm
    from pyswarms.backend.handlers import BoundaryHandler, VelocityHandler
    from pyswarms.backend.topology import Ring, Star


class PSOConfig(OptimizerConfig):
    """Settings of :class:`PSOOptimizer` (defaults: Clerc's constriction coefficients)."""

    population: int = Field(20, ge=2, description="number of particles")
    w: float = Field(0.7298, ge=0, description="inertia weight")
    c1: float = Field(1.49618, ge=0, description="cognitive coefficient")
    c2: float = Field(1.49618, ge=0, description="social coefficient")
    topology: Literal["global", "ring"] = "global"
    k: int = Field(3, ge=1, description="neighbours per particle (ring topology)")
    p: Literal[1, 2] = Field(2, description="Minkowski norm of the ring's neighbour search")
    velocity_clamp: float = Field(0.25, gt=0, le=1, description="max |velocity| as a fraction of each range")
    boundary: Literal["nearest", "reflective", "periodic", "random", "intermediate"] = "reflective"

    @model_validator(mode="after")
    def _check(self) -> "PSOConfig":
        if self.topology == "ring" and self.k >= self.population:
            raise ValueError(f"k must be < population for the ring topology, got k={self.k}, population={self.population}")
        return self


class PSOOptimizer(Optimizer):
    Config = PSOConfig
    config: PSOConfig
    supports_async = True

    def __init__(self, box, config, *, seed, max_generations=None):
        super().__init__(box, config, seed=seed, max_generations=max_generations)
        c = self.config
        self._bits = box.binary
        self._span = np.where(box.upper > box.lower, box.upper - box.lower, 1.0)
        with quiet_pyswarms():
            self._topology = Ring(static=False) if c.topology == "ring" else Star()
            self._bh = BoundaryHandler(strategy=c.boundary)
            self._vh = VelocityHandler(strategy="unmodified")
        self._clamp = (-c.velocity_clamp, c.velocity_clamp)
        self._unit = (np.zeros(box.dim), np.ones(box.dim))
        self._rng = seeded_states(seed)
        self._swarm = None
        # asynchronous mode: which particle each asked token moves, who is in flight, who has started
        self._asked: dict[int, int] = {}
        self._started = np.zeros(config.population, dtype=bool)
        self._next = 0
        self._cursor = 0

    @property
    def population_size(self) -> int:
        return self.config.population

    def _to_box(self, u: np.ndarray) -> np.ndarray:
        return self.box.lower + u * self._span

    def _gbest(self) -> None:
        c = self.config
        kwargs = {"p": c.p, "k": c.k} if c.topology == "ring" else {}
        best_pos, self._swarm.best_cost = self._topology.compute_gbest(self._swarm, **kwargs)
        self._swarm.best_pos = np.array(best_pos)  # a copy: pyswarms returns a view into pbest_pos

    def _new_swarm(self):
        """A fresh swarm (call inside the adapter's RNG block)."""
        c = self.config
        options = {"c1": c.c1, "c2": c.c2, "w": c.w, "k": c.k, "p": c.p}
        swarm = create_swarm(c.population, self.box.dim, options=options, bounds=self._unit, clamp=self._clamp)
        if self._bits.any():
            swarm.position[:, self._bits] = np.random.randint(0, 2, size=(c.population, int(self._bits.sum())))
        swarm.pbest_cost = np.full(c.population, np.inf)
        swarm.current_cost = np.full(c.population, np.inf)
        swarm.pbest_pos = swarm.position.copy()  # pyswarms' default is the position array itself
        return swarm

    def _moved(self, swarm) -> tuple[np.ndarray, np.ndarray]:
        """Every particle's next (velocity, position) by pyswarms' operators (call inside the RNG block)."""
        velocity = compute_velocity(swarm, self._clamp, self._vh, self._unit)
        ahead = copy.copy(swarm)
        ahead.velocity = velocity
        new = compute_position(ahead, self._unit, self._bh)
        if self._bits.any():
            v = velocity[:, self._bits]
            new[:, self._bits] = (np.random.random_sample(v.shape) < 1.0 / (1.0 + np.exp(-v))) * 1.0
        return velocity, new

    def step(self, evaluate) -> None:
        with numpy_global_rng(self._rng):
            if self._swarm is None:
                self._swarm = self._new_swarm()
            else:
                swarm = self._swarm
                swarm.velocity, swarm.position = self._moved(swarm)
        # evaluation happens outside the RNG block (the runner may do anything meanwhile)
        cost = as_minimise(evaluate(self._to_box(self._swarm.position)))
        swarm = self._swarm
        swarm.current_cost = cost
        swarm.pbest_pos, swarm.pbest_cost = compute_pbest(swarm)
        with numpy_global_rng(self._rng):
            self._gbest()

    # ---- asynchronous: a particle moves when its own result is back ------------------------------
    def ask(self):
        n = self.config.population
        busy = set(self._asked.values())
        free = [p for p in ((self._cursor + k) % n for k in range(n)) if p not in busy]
        if not free:
            return None  # every particle is being evaluated
        p = free[0]
        self._cursor = (p + 1) % n
        with numpy_global_rng(self._rng):
            if self._swarm is None:
                self._swarm = self._new_swarm()
            swarm = self._swarm
            if self._started[p]:  # its last evaluation is back: move it
                velocity, position = self._moved(swarm)
                swarm.velocity[p], swarm.position[p] = velocity[p], position[p]
        self._started[p] = True
        token, self._next = self._next, self._next + 1
        self._asked[token] = p
        return token, self._to_box(self._swarm.position[p]), {"particle": int(p)}

    def tell(self, token: int, value: float) -> None:
        self._update(self._asked.pop(token), float(value))

    def pending(self) -> dict[int, np.ndarray]:
        return {t: self._to_box(self._swarm.position[p]) for t, p in self._asked.items()}

    def inject(self, x, value, info) -> None:
        p = info.get("particle")
        if not isinstance(p, int) or not 0 <= p < self.config.population or p in self._asked.values():
            return
        if self._swarm is None:  # a state rebuilt from stored trials: the swarm starts from them
            with numpy_global_rng(self._rng):
                self._swarm = self._new_swarm()
        self._swarm.position[p] = np.clip((np.asarray(x, dtype=float) - self.box.lower) / self._span, 0.0, 1.0)
        self._started[p] = True
        self._update(p, float(value))

    def _update(self, p: int, value: float) -> None:
        swarm = self._swarm
        swarm.current_cost[p] = value
        if value < swarm.pbest_cost[p]:
            swarm.pbest_cost[p], swarm.pbest_pos[p] = value, swarm.position[p].copy()
        with numpy_global_rng(self._rng):
            self._gbest()

    def state_dict(self) -> dict[str, Any]:
        s = self._swarm
        swarm = None if s is None else {
            k: np.array(getattr(s, k)) for k in
            ("position", "velocity", "pbest_pos", "pbest_cost", "best_pos", "current_cost")
        } | {"best_cost": float(s.best_cost)}
        return {"rng": self._rng, "swarm": swarm, "asked": dict(self._asked), "started": self._started.copy(),
                "next": self._next, "cursor": self._cursor}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._rng = state["rng"]
        self._asked = dict(state.get("asked", {}))
        self._started = np.array(state.get("started", np.zeros(self.config.population, dtype=bool)))
        self._next, self._cursor = state.get("next", 0), state.get("cursor", 0)
        if state["swarm"] is None:
            self._swarm = None
            return
        c = self.config
        options = {"c1": c.c1, "c2": c.c2, "w": c.w, "k": c.k, "p": c.p}
        saved = np.random.get_state()
        swarm = create_swarm(c.population, self.box.dim, options=options, bounds=self._unit, clamp=self._clamp)
        np.random.set_state(saved)
        for key, value in state["swarm"].items():
            setattr(swarm, key, value)
        self._swarm = swarm


PSO = Registered(PSOOptimizer, summary="particle swarm (pyswarms), global-best topology")
PSO_RING = Registered(PSOOptimizer, {"topology": "ring"}, summary="particle swarm (pyswarms), ring topology")
