"""Any mealpy algorithm, one generation per ``step``.

mealpy's ``solve()`` owns its loop, so the adapter drives the same phases itself
(``initialization``, then ``evolve(epoch)`` + ``update_global_best_agent`` per generation) in
mealpy's ``swarm`` mode, where every algorithm evaluates a population through
``update_target_for_population`` (single candidates through ``get_target``): both are routed
to the runner's ``evaluate``. Bits are coordinates in [0, 1] read as ``x >= 0.5``.

Registered presets: ``ssa`` = salp swarm (mealpy ``SSO.OriginalSSO``, Mirjalili et al. 2017 --
in mealpy 3, ``SSA.OriginalSSA`` is the *sparrow* search algorithm, reachable as
``mealpy:SSA.OriginalSSA``); ``sca`` = sine-cosine (``SCA.OriginalSCA``); ``mealpy:<Module>.<Class>``
for any other algorithm, with its own constructor arguments as YAML keys.
"""

from __future__ import annotations

import inspect
import logging
import random
from typing import Any

import mealpy
import numpy as np
from mealpy.math_based.SCA import QTable
from mealpy.optimizer import Optimizer as MealpyBase
from mealpy.utils.agent import Agent
from mealpy.utils.problem import Problem
from mealpy.utils.space import FloatVar
from mealpy.utils.target import Target
from pydantic import ConfigDict, Field, model_validator

from optileuk.optimizers._base import Optimizer, OptimizerConfig, Registered, as_minimise

_NOT_STATE = {"problem", "logger", "validator", "history", "termination",
              "update_target_for_population", "get_target", "generate_population"}
_HISTORY = ("list_global_best", "list_current_best", "list_global_worst", "list_current_worst")


def resolve_algorithm(name: str) -> type[MealpyBase]:
    """``'SSO.OriginalSSO'`` -> the mealpy class; ``ValueError`` naming valid forms otherwise."""
    parts = (name or "").split(".")
    if len(parts) != 2 or not all(parts):
        raise ValueError(f"mealpy algorithm must look like '<Module>.<Class>' (e.g. 'SCA.OriginalSCA'), got {name!r}")
    module = getattr(mealpy, parts[0], None)
    cls = getattr(module, parts[1], None) if module is not None else None
    if not (isinstance(cls, type) and issubclass(cls, MealpyBase)):
        raise ValueError(f"'{name}' is not a mealpy algorithm (see mealpy.get_all_optimizers())")
    return cls


class MealpyConfig(OptimizerConfig):
    """``algorithm`` and ``population``; any other key is passed to the mealpy constructor."""

    model_config = ConfigDict(extra="allow", frozen=True)
    algorithm: str
    population: int = Field(30, ge=5, description="mealpy pop_size")

    @model_validator(mode="after")
    def _check(self) -> "MealpyConfig":
        cls = resolve_algorithm(self.algorithm)
        accepted = [p for p in inspect.signature(cls.__init__).parameters if p not in ("self", "epoch", "pop_size", "kwargs")]
        unknown = [k for k in self.algorithm_kwargs if k not in accepted]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an argument of {self.algorithm} (valid: {', '.join(['population', *accepted])})")
        logging.getLogger("mealpy").setLevel(logging.ERROR)
        try:
            cls(epoch=10, pop_size=self.population, **self.algorithm_kwargs)
        except ValueError as exc:
            raise ValueError(f"{self.algorithm}: {exc}") from None
        return self

    @property
    def algorithm_kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})


class MealpyOptimizer(Optimizer):
    Config = MealpyConfig
    config: MealpyConfig

    def __init__(self, box, config, *, seed, max_generations=None):
        super().__init__(box, config, seed=seed, max_generations=max_generations)
        self._evaluate = None
        self._epoch = 0
        self._model = self._fresh_model()

    @property
    def population_size(self) -> int:
        return self.config.population

    def _fresh_model(self) -> MealpyBase:
        c = self.config
        cls = resolve_algorithm(c.algorithm)
        model = cls(epoch=max(int(self.max_generations or 1000), 1), pop_size=c.population, **c.algorithm_kwargs)
        upper = np.where(self.box.upper > self.box.lower, self.box.upper, self.box.lower + 1e-12)
        problem = Problem(bounds=FloatVar(lb=self.box.lower, ub=upper), minmax="min",
                          obj_func=_never_called, log_to=None)
        problem._n_objs, problem.obj_weights = 1, np.ones(1)
        model.check_problem(problem, self.seed)
        model.check_mode_and_workers("swarm", None)
        model.check_termination("start", None, None)
        model.initialize_variables()
        model.update_target_for_population = self._update_targets
        model.get_target = self._get_target
        model.generate_population = self._generate_population
        return model

    # ---- evaluation hooks (mealpy calls these) ---------------------------------------------------
    def _values(self, x: np.ndarray) -> np.ndarray:
        if self._evaluate is None:
            raise RuntimeError("mealpy evaluated outside step()")
        return as_minimise(self._evaluate(np.atleast_2d(x)))

    def _update_targets(self, pop):
        values = self._values(np.array([a.solution for a in pop]))
        for agent, v in zip(pop, values):
            agent.target = Target(objectives=[float(v)], weights=[1.0])
        self._model.nfe_counter += len(pop)
        return pop

    def _get_target(self, solution, counted=True):
        if counted:
            self._model.nfe_counter += 1
        return Target(objectives=[float(self._values(solution)[0])], weights=[1.0])

    def _generate_population(self, pop_size=None):
        m = self._model
        pop = [m.generate_empty_agent() for _ in range(pop_size or m.pop_size)]
        return self._update_targets(pop)

    # ---- the loop ---------------------------------------------------------------------------------
    def step(self, evaluate) -> None:
        m = self._model
        self._evaluate = evaluate
        try:
            if self._epoch == 0:
                m.before_initialization(None)
                m.initialization()
                m.after_initialization()
                m.before_main_loop()
            else:
                m.evolve(self._epoch)
                pop_temp, m.g_best = m.update_global_best_agent(m.pop)
                if m.sort_flag:
                    m.pop = pop_temp
                for key in _HISTORY:  # keep state small: only what the next step reads
                    setattr(m.history, key, getattr(m.history, key)[-2:])
        finally:
            self._evaluate = None
        self._epoch += 1

    def state_dict(self) -> dict[str, Any]:
        m = self._model
        out = _ToData()
        model = {}
        for k, v in m.__dict__.items():
            if k in _NOT_STATE:
                continue
            try:
                model[k] = out(v)
            except _Skip:  # functions, rule systems ...: made by the constructor from the config
                continue
        return {
            "epoch": self._epoch,
            "model": model,
            "history": {k: out(getattr(m.history, k)) for k in _HISTORY if hasattr(m.history, k)},
            "bounds_rng": [var.generator.bit_generator.state for var in m.problem.bounds],
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._model = m = self._fresh_model()
        self._epoch = state["epoch"]
        back = _FromData()
        m.__dict__.update({k: back(v) for k, v in state["model"].items()})
        for k, v in state["history"].items():
            setattr(m.history, k, back(v))
        for var, s in zip(m.problem.bounds, state["bounds_rng"]):
            var.generator.bit_generator.state = s


# ---- a mealpy model's attributes as data (see optileuk.plain) ------------------------------------------
# Agents, targets and Q-tables are rebuilt from their attributes; only these classes can be made.
_CLASSES = {"Agent": Agent, "Target": Target, "QTable": QTable}
_OBJ = "mealpy_object"


class _Skip(Exception):
    """An attribute that is not data (it comes from the constructor instead)."""


class _ToData:
    """Converts mealpy objects to plain data, keeping shared objects shared (an agent in the
    population and in the history, a generator held by the model and by a Q-table)."""

    def __init__(self):
        self._refs: dict[int, int] = {}
        self._keep: list[Any] = []  # holds converted objects alive so that ids stay unique

    def _ref(self, obj) -> tuple[int, bool]:
        seen = self._refs.get(id(obj))
        if seen is not None:
            return seen, True
        self._refs[id(obj)] = n = len(self._refs)
        self._keep.append(obj)
        return n, False

    def __call__(self, v: Any) -> Any:
        if v is None or isinstance(v, (bool, int, float, str, np.generic)):
            return v
        if isinstance(v, (list, tuple)):
            out = [self(x) for x in v]
            return out if isinstance(v, list) else tuple(out)
        if isinstance(v, dict):
            return {k: self(x) for k, x in v.items()}
        if isinstance(v, np.ndarray):
            n, seen = self._ref(v)
            return {_OBJ: "ref", "ref": n} if seen else {_OBJ: "array", "ref": n, "value": v}
        kind = next((name for name, cls in _CLASSES.items() if type(v) is cls), None)
        if kind is None and isinstance(v, (np.random.Generator, random.Random)):
            kind = type(v).__name__
        if kind is None:
            raise _Skip
        n, seen = self._ref(v)
        if seen:
            return {_OBJ: "ref", "ref": n}
        if kind == "Generator":
            return {_OBJ: kind, "ref": n, "state": v.bit_generator.state}
        if kind == "Random":
            return {_OBJ: kind, "ref": n, "state": v.getstate()}
        return {_OBJ: kind, "ref": n, "attrs": {k: self(x) for k, x in vars(v).items()}}


class _FromData:
    def __init__(self):
        self._refs: dict[int, Any] = {}

    def __call__(self, v: Any) -> Any:
        if isinstance(v, list):
            return [self(x) for x in v]
        if isinstance(v, tuple):
            return tuple(self(x) for x in v)
        if not isinstance(v, dict):
            return v
        kind = v.get(_OBJ)
        if kind is None:
            return {k: self(x) for k, x in v.items()}
        if kind == "ref":
            return self._refs[v["ref"]]
        if kind == "array":
            obj = np.array(v["value"])
        elif kind == "Generator":
            obj = np.random.default_rng()
            obj.bit_generator.state = v["state"]
        elif kind == "Random":
            obj = random.Random()
            obj.setstate(v["state"])
        elif kind in _CLASSES:
            obj = object.__new__(_CLASSES[kind])
        else:
            raise ValueError(f"unknown mealpy object {kind!r} in a saved state")
        self._refs[v["ref"]] = obj
        if kind in _CLASSES:  # registered before its attributes, which may refer back to it
            obj.__dict__.update({k: self(x) for k, x in v["attrs"].items()})
        return obj


def _never_called(x):  # evaluation goes through the adapter's hooks
    raise RuntimeError("mealpy called obj_func directly")


SSA = Registered(MealpyOptimizer, {"algorithm": "SSO.OriginalSSO"}, summary="salp swarm (mealpy SSO.OriginalSSO)")
SCA = Registered(MealpyOptimizer, {"algorithm": "SCA.OriginalSCA"}, summary="sine-cosine (mealpy SCA.OriginalSCA)")
MEALPY = Registered(MealpyOptimizer, summary="any mealpy algorithm: mealpy:<Module>.<Class>", takes_argument=True)
