"""``nevergrad:<name>``: any optimizer of Meta's nevergrad portfolio through its ask/tell interface
(default ``NGOpt``, which picks its algorithm from the dimension, budget and parallelism; also
``TwoPointsDE``, ``PSO``, ``DE``, ``OnePlusOne``, ``CMA`` to cross-check ours against theirs).

nevergrad sees the box as one bounded array (``choice`` coordinates and bits included: the decoder
rounds them). Its optimizers are objects, not data: the state is the log of asks, tells and
injected results, and loading it builds the optimizer again under the same seed and replays the
log -- the same candidates come back in the same order (checked: a replay that asks another point
is refused), so a killed run continues exactly as a straight one. ``budget`` is given to the
optimizer when the runner knows it (``budget.trials``, or generations x population): NGOpt chooses
differently for different budgets.
"""

from __future__ import annotations

import contextlib
import warnings
from typing import Any, Iterator

import numpy as np
from pydantic import Field, field_validator

from optileuk.optimizers._base import (Optimizer, OptimizerConfig, Registered, as_minimise, numpy_global_rng,
                                       python_global_rng, seeded_states)

ASK, TELL, INJECT = 0, 1, 2


class NevergradConfig(OptimizerConfig):
    algorithm: str = "NGOpt"
    population: int = Field(8, ge=1, description="candidates asked per generation (nevergrad's num_workers)")
    budget: int | None = Field(None, ge=1, description="evaluations nevergrad plans for (default: the runner's)")

    @field_validator("algorithm")
    @classmethod
    def _known(cls, v: str) -> str:
        import nevergrad as ng

        if v not in ng.optimizers.registry:
            near = sorted(n for n in ng.optimizers.registry if v.lower() in n.lower())[:8]
            raise ValueError(f"{v!r} is not a nevergrad optimizer" + (f" (similar: {', '.join(near)})" if near else
                                                                         " (e.g. NGOpt, TwoPointsDE, PSO, DE, CMA)"))
        return v


class NevergradOptimizer(Optimizer):
    Config = NevergradConfig
    config: NevergradConfig
    supports_async = True

    def __init__(self, box, config, *, seed, max_generations=None, objectives: int = 1):
        super().__init__(box, config, seed=seed, max_generations=max_generations, objectives=objectives)
        self._start()

    @property
    def population_size(self) -> int:
        return self.config.population

    @contextlib.contextmanager
    def _private(self) -> Iterator[None]:
        """nevergrad draws from numpy's global RNG too (and warns about numpy deprecations): both kept
        private to this adapter, seeded from its seed."""
        with numpy_global_rng(self._globals), python_global_rng(self._globals), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield

    def _start(self) -> None:
        import nevergrad as ng

        self._globals = seeded_states(self.seed)
        c = self.config
        budget = c.budget or (self.max_generations * c.population if self.max_generations else None)
        lower, upper = self.box.lower.astype(float), np.maximum(self.box.upper, self.box.lower + 1e-12).astype(float)
        with self._private():
            param = ng.p.Array(init=(lower + upper) / 2, lower=lower, upper=upper)
            param.random_state = np.random.RandomState(self.seed)
            self._opt = ng.optimizers.registry[c.algorithm](parametrization=param, budget=budget,
                                                            num_workers=c.population)
        self._asked: dict[int, Any] = {}  # token -> candidate in flight
        self._next = 0
        self._log: list[tuple[int, int, float, np.ndarray | None]] = []  # (event, token, value, x)

    def _x(self, cand) -> np.ndarray:
        return np.clip(np.asarray(cand.value, dtype=float), self.box.lower, self.box.upper)

    # ---- one at a time -----------------------------------------------------------------------------
    def ask(self):
        with self._private():
            cand = self._opt.ask()
        token, self._next = self._next, self._next + 1
        self._asked[token] = cand
        self._log.append((ASK, token, np.nan, None))
        return token, self._x(cand), {}

    def tell(self, token: int, value) -> None:
        with self._private():
            self._opt.tell(self._asked.pop(token), float(value))
        self._log.append((TELL, token, float(value), None))

    def pending(self) -> dict[int, np.ndarray]:
        return {t: self._x(c) for t, c in self._asked.items()}

    def inject(self, x, value, info) -> None:
        x = np.asarray(x, dtype=float)
        with self._private():
            self._opt.tell(self._opt.parametrization.spawn_child(new_value=x), float(value))
        self._log.append((INJECT, -1, float(value), x))

    # ---- a generation ------------------------------------------------------------------------------
    def step(self, evaluate) -> None:
        asked = [self.ask() for _ in range(self.config.population)]
        values = as_minimise(evaluate(np.array([x for _, x, _ in asked])))
        for (token, _, _), v in zip(asked, values):
            self.tell(token, v)

    # ---- state: the log, replayed ------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        events = np.array([[e, t] for e, t, _, _ in self._log], dtype=np.int64).reshape(-1, 2)
        xs = np.array([x if x is not None else np.full(self.box.dim, np.nan) for _, _, _, x in self._log],
                      dtype=float).reshape(-1, self.box.dim)
        return {"algorithm": self.config.algorithm, "events": events,
                "values": np.array([v for _, _, v, _ in self._log], dtype=float), "x": xs,
                "asked_x": {int(t): self._x(c) for t, c in self._asked.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._start()
        for (event, token), value, x in zip(state["events"], state["values"], state["x"]):
            if event == ASK:
                got, _, _ = self.ask()
                if got != token:
                    raise ValueError("the nevergrad log does not replay (asks out of order)")
            elif event == TELL:
                self.tell(int(token), value)
            else:
                self.inject(x, value, {})
        for token, x in state["asked_x"].items():  # the candidates in flight came back as they were
            if not np.allclose(self._x(self._asked[int(token)]), x):
                raise ValueError(f"the nevergrad log does not replay under seed {self.seed} "
                                 f"({self.config.algorithm} asked another point)")


NEVERGRAD = Registered(NevergradOptimizer, summary="any nevergrad optimizer: nevergrad:<name> (NGOpt portfolio, "
                       "TwoPointsDE, PSO, DE, OnePlusOne, CMA, ...)", takes_argument=True, argument="<name>",
                       optional_argument=True)
