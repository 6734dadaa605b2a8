"""The optimizer adapter contract and its registry.

An adapter drives one library (pyswarms, DEAP, mealpy, an Optuna sampler) one generation at a
time: ``step(evaluate)`` where ``evaluate(X) -> values`` is supplied by the runner and always
*minimises*. ``state_dict()`` holds everything needed to continue (RNG state included).
Adapters do no I/O and never touch a storage.

Adapters that can make a new candidate whenever a worker is free (``supports_async = True``)
also implement the asynchronous contract, used by ``runner: {mode: async}``: ``ask()`` one
candidate, ``tell(token, value)`` its result in any order, ``pending()`` the candidates asked and
not yet told (kept in ``state_dict()``), and ``inject(x, value, info)`` for a result the adapter
did not ask for itself (trials finished after the last saved state, read back on resume).
"""

from __future__ import annotations

import contextlib
import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Callable, ClassVar, Iterator

import numpy as np
from pydantic import BaseModel, ConfigDict

from optileuk.box import Box

Evaluate = Callable[[np.ndarray], np.ndarray]


class OptimizerConfig(BaseModel):
    """Base of every optimizer's typed config (YAML keys = argument names)."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class Optimizer(ABC):
    """Base class of the adapters.

    Args:
        box: the encoded search space.
        config: the adapter's validated config.
        seed: seed of every random choice the adapter makes.
        max_generations: how many generations the runner expects to ask for (schedules such
            as SSA's ``c1`` or SCA's ``r1`` depend on it); ``None`` when unknown.
        objectives: values per candidate. With more than one (only for adapters with
            ``multi_objective``), ``evaluate`` returns one row of values per candidate, each minimised.
    """

    Config: ClassVar[type[OptimizerConfig]] = OptimizerConfig
    supports_async: ClassVar[bool] = False
    multi_objective: ClassVar[bool] = False

    def __init__(self, box: Box, config: OptimizerConfig, *, seed: int, max_generations: int | None = None,
                 objectives: int = 1):
        self.box = box
        self.config = config
        self.seed = seed
        self.max_generations = max_generations
        self.objectives = objectives

    @property
    @abstractmethod
    def population_size(self) -> int:
        """Candidates evaluated per generation (for budget planning)."""

    @abstractmethod
    def step(self, evaluate: Evaluate) -> None:
        """Run one generation; call ``evaluate`` on batches of box points (rows)."""

    @abstractmethod
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue after the last completed ``step``."""

    @abstractmethod
    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from a state returned by :meth:`state_dict`."""

    # ---- asynchronous mode (adapters with ``supports_async``) ------------------------------------
    def ask(self) -> tuple[int, np.ndarray, dict[str, Any]] | None:
        """One new candidate ``(token, box point, info)``; ``None`` when none can be made before a
        result comes back. ``info`` (JSON-able) is stored with the candidate's trial."""
        raise NotImplementedError(f"{type(self).__name__} does not support asynchronous evaluation")

    def tell(self, token: int, value: float) -> None:
        """The (minimised) value of the candidate asked as ``token``."""
        raise NotImplementedError(f"{type(self).__name__} does not support asynchronous evaluation")

    def pending(self) -> dict[int, np.ndarray]:
        """Candidates asked and not yet told, by token."""
        raise NotImplementedError(f"{type(self).__name__} does not support asynchronous evaluation")

    def inject(self, x: np.ndarray, value: float, info: dict[str, Any]) -> None:
        """A result this adapter did not ask for (evaluated after its last saved state)."""
        raise NotImplementedError(f"{type(self).__name__} does not support asynchronous evaluation")


@dataclass(frozen=True)
class Registered:
    """A registered optimizer: an adapter class plus preset defaults (variants are presets)."""

    cls: type[Optimizer]
    defaults: dict[str, Any] = field(default_factory=dict)
    summary: str = ""
    takes_argument: bool = False  # e.g. ``mealpy:<Module>.<Class>``
    argument: str = "<Module>.<Class>"  # what the argument is, for listings
    optional_argument: bool = False  # the name alone works too (the config's default algorithm)

    def config_model(self) -> type[OptimizerConfig]:
        return self.cls.Config

    def make_config(self, data: dict[str, Any], argument: str | None = None) -> OptimizerConfig:
        merged = {**self.defaults, **data}
        if self.takes_argument and (argument or not self.optional_argument):
            merged["algorithm"] = argument
        return self.cls.Config.model_validate(merged)

    def build(self, box: Box, config: OptimizerConfig, *, seed: int, max_generations: int | None,
              objectives: int = 1) -> Optimizer:
        if objectives > 1:  # only multi-objective adapters take it (plug-ins written before it need not)
            return self.cls(box, config, seed=seed, max_generations=max_generations, objectives=objectives)
        return self.cls(box, config, seed=seed, max_generations=max_generations)


# ---- the libraries' global RNGs, swapped in and out so that no global state leaks -------------


@contextlib.contextmanager
def numpy_global_rng(state: dict[str, Any]) -> Iterator[None]:
    """Run a block with ``np.random``'s global state set to ``state['np']`` and save it back.

    pyswarms' backend draws from the global ``np.random``; this keeps its draws reproducible
    and private to one adapter.
    """
    saved = np.random.get_state()
    np.random.set_state(state["np"])
    try:
        yield
    finally:
        state["np"] = np.random.get_state()
        np.random.set_state(saved)


@contextlib.contextmanager
def python_global_rng(state: dict[str, Any]) -> Iterator[None]:
    """Same as :func:`numpy_global_rng` for the ``random`` module (used by DEAP)."""
    saved = random.getstate()
    random.setstate(state["py"])
    try:
        yield
    finally:
        state["py"] = random.getstate()
        random.setstate(saved)


def seeded_states(seed: int) -> dict[str, Any]:
    return {"np": np.random.RandomState(seed).get_state(), "py": random.Random(seed).getstate()}


def as_minimise(values: Any) -> np.ndarray:
    return np.asarray(values, dtype=float).reshape(-1)
