"""Optuna's other samplers behind the TPE adapter: CMA-ES, Gaussian-process BO, quasi-Monte Carlo,
and any Optuna sampler by name (``optuna:<SamplerName>``).

Each keeps a private in-memory Optuna study over the box coordinates (real coordinates as floats,
``choice`` coordinates and bits as categoricals), as TPE does. Its state is data: the private
study's trials, the per-trial and per-study memory the sampler writes (generation numbers, the
QMC sequence position), the sampler's random number generators, and for CMA-ES the CMA object
itself (its arrays and numbers; Optuna keeps it pickled in trial attributes, which optileuk never
reads back: the adapter keeps the object in memory and saves it as data).

* ``cmaes``: :class:`optuna.samplers.CmaEsSampler` on the ``cmaes`` package. Presets: ``restart:
  ipop | bipop`` (restarts with a growing, or alternately large and small, population when CMA-ES
  converges -- Optuna 5 dropped its own restarts, the adapter runs them), ``separable`` (sep-CMA-ES:
  a diagonal covariance, for many dimensions), ``lr_adapt`` (learning-rate adaptation, for noisy
  or multimodal problems), ``with_margin`` (CMA-ES with margin for integer coordinates). As in
  Optuna, categorical coordinates (choices, bits) are not CMA-ES's: the independent (random)
  sampler draws them. Asynchronously, each free worker gets a candidate from the current
  generation's distribution, and the distribution moves once ``population`` candidates of that
  generation are back (later ones of an older generation are not used), as Optuna does.
* ``gp``: :class:`optuna.samplers.GPSampler` (Gaussian process, log expected improvement). Its cost
  grows with the trials (cubic in their number): see docs/benchmarks.md for where it stops
  paying. The kernel is fitted from its default start at every ask (Optuna warm-starts it from the
  last fit): then the trials and the RNG are the whole state, and a resumed run continues exactly.
* ``qmc``: :class:`optuna.samplers.QMCSampler` (Sobol, or ``qmc_type: halton``; scrambled): a
  low-discrepancy sequence, the better random baseline.
* ``optuna:<SamplerName>``: any sampler of ``optuna.samplers`` with its keyword arguments, e.g.
  ``{name: "optuna:BruteForceSampler"}``; its state is its trials, its memory in Optuna's attributes
  and its RNGs (a sampler that keeps other memory continues from those).
"""

from __future__ import annotations

import inspect
import math
from typing import Any

import numpy as np
import optuna
from pydantic import ConfigDict, Field, field_validator

from optileuk.optimizers._base import OptimizerConfig, Registered
from optileuk.optimizers._tpe import TPEOptimizer, _quiet_experimental


# ---- the sampler's RNGs and memory, as data ---------------------------------------------------------
def _rngs(sampler, path: str = "") -> dict[str, Any]:
    """Every RandomState a sampler draws from (its LazyRandomStates, and its sub-samplers'), by path."""
    from optuna.samplers._lazy_random_state import LazyRandomState

    out = {}
    for name, value in vars(sampler).items():
        if isinstance(value, LazyRandomState):
            out[f"{path}{name}"] = value
        elif isinstance(value, optuna.samplers.BaseSampler):
            out.update(_rngs(value, f"{path}{name}."))
    return out


def _plain_attr(value: Any) -> bool:
    if value is None or isinstance(value, (bool, int, float, str)):
        return True
    if isinstance(value, (list, tuple)):
        return all(_plain_attr(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and _plain_attr(v) for k, v in value.items())
    return False


def _cma_classes() -> dict[str, type]:
    import cmaes

    return {c.__name__: c for c in (cmaes.CMA, cmaes.SepCMA, cmaes.CMAwM)}


def cma_to_data(obj: Any) -> Any:
    """A cmaes optimizer object (and what it holds) as plain data."""
    if type(obj).__name__ in _cma_classes() and type(obj).__module__.startswith("cmaes"):
        return {"__cma__": type(obj).__name__, "attrs": {k: cma_to_data(v) for k, v in vars(obj).items()}}
    if isinstance(obj, np.random.RandomState):
        return {"__random_state__": obj.get_state()}
    if isinstance(obj, dict):
        return {k: cma_to_data(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return type(obj)(cma_to_data(v) for v in obj)
    return obj


def cma_from_data(data: Any) -> Any:
    """Inverse of :func:`cma_to_data`; only cmaes's own optimizer classes are built."""
    if isinstance(data, dict) and "__cma__" in data:
        cls = _cma_classes().get(data["__cma__"])
        if cls is None:
            raise ValueError(f"not a cmaes optimizer class: {data['__cma__']!r}")
        obj = cls.__new__(cls)
        obj.__dict__.update({k: cma_from_data(v) for k, v in data["attrs"].items()})
        return obj
    if isinstance(data, dict) and "__random_state__" in data:
        rng = np.random.RandomState()
        rng.set_state(tuple(data["__random_state__"]))
        return rng
    if isinstance(data, dict):
        return {k: cma_from_data(v) for k, v in data.items()}
    if isinstance(data, (list, tuple)):
        return type(data)(cma_from_data(v) for v in data)
    return data


class SamplerOptimizer(TPEOptimizer):
    """An Optuna sampler behind the TPE adapter, with a state that is data (see the module)."""

    multi_objective = False

    @property
    def population_size(self) -> int:
        return self.config.population

    def _sampler(self):
        raise NotImplementedError

    def _rng_state(self) -> dict[str, Any]:
        trials = self._study.get_trials(deepcopy=False)
        return {"rngs": {path: lazy.rng.get_state() for path, lazy in _rngs(self._study.sampler).items()},
                "trial_attrs": [{k: v for k, v in t.system_attrs.items() if ":optimizer:" not in k and _plain_attr(v)}
                                for t in trials],
                "study_attrs": dict(self._study._storage.get_study_system_attrs(self._study._study_id))}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        for path, lazy in _rngs(self._study.sampler).items():
            if path in state["rngs"]:
                lazy.rng.set_state(tuple(state["rngs"][path]))

    def _system_attrs(self, state: dict[str, Any], i: int) -> dict[str, Any]:
        return dict(state["trial_attrs"][i])

    def _restore_study_attrs(self, state: dict[str, Any]) -> None:
        for name, value in state["study_attrs"].items():
            self._study._storage.set_study_system_attr(self._study._study_id, name, value)


# ---- CMA-ES ----------------------------------------------------------------------------------------
class CmaEsConfig(OptimizerConfig):
    """Settings of :class:`optuna.samplers.CmaEsSampler`, plus restarts (``restart``)."""

    population: int | None = Field(None, ge=2, description="CMA-ES population (default 4 + 3 ln(dimensions))")
    restart: str = Field("none", pattern="^(none|ipop|bipop)$", description="restart CMA-ES when it converges")
    inc_popsize: int = Field(2, ge=2, description="population multiplier of each IPOP (large BIPOP) restart")
    separable: bool = False
    lr_adapt: bool = False
    with_margin: bool = False
    sigma0: float | None = Field(None, gt=0, description="initial step size, on [0, 1]-scaled coordinates")
    n_startup_trials: int = Field(1, ge=0)


class _CmaEsSampler(optuna.samplers.CmaEsSampler):
    """Optuna's CmaEsSampler keeping its CMA object in memory (``self.optimizer``, saved as data by the
    adapter) and restarting it (IPOP / BIPOP) when it converges."""

    def __init__(self, *, restart: str, inc_popsize: int, dim: int, **kwargs):
        super().__init__(**kwargs)
        self.optimizer = None
        self.restart, self.inc, self.restarts = restart, inc_popsize, 0
        self.base_popsize = self._popsize or 4 + math.floor(3 * math.log(max(dim, 1)))
        self.evals = {"large": 0, "small": 0}  # BIPOP: evaluations spent in each regime
        self.regime, self.large_restarts = "large", 0
        self._base_prefix = self._attr_prefix

    def _restore_optimizer(self, completed_trials):
        if self.optimizer is not None and self.restart != "none" and self.optimizer.should_stop():
            self._next_restart()
        return self.optimizer

    def _next_restart(self) -> None:
        """A new CMA-ES (fresh mean and step) with the next population: IPOP multiplies it by ``inc``
        every time; BIPOP (Hansen 2009) runs such a large one, or a small one of a random size between
        the default and half the large one, whichever regime has spent fewer evaluations."""
        self.evals[self.regime] += self.optimizer.population_size * self.optimizer.generation
        if self.restart == "ipop" or self.evals["small"] >= self.evals["large"]:
            self.regime, self.large_restarts = "large", self.large_restarts + 1
            self._popsize = self.base_popsize * self.inc ** self.large_restarts
        else:
            large = self.base_popsize * self.inc ** self.large_restarts
            u = self._cma_rng.rng.uniform()
            self.regime = "small"
            small = math.floor(self.base_popsize * (0.5 * large / self.base_popsize) ** (u ** 2))
            self._popsize = max(self.base_popsize, small)
        self.restarts += 1
        self._attr_prefix = f"{self._base_prefix}restart{self.restarts}:"  # generations of this run only
        self.optimizer = None

    def _init_optimizer(self, trans, direction):
        self.optimizer = super()._init_optimizer(trans, direction)
        return self.optimizer


class CmaEsOptimizer(SamplerOptimizer):
    Config = CmaEsConfig
    config: CmaEsConfig
    supports_async = True

    @property
    def population_size(self) -> int:
        return self.config.population or 4 + math.floor(3 * math.log(max(self.box.dim, 1)))

    def _sampler(self):
        c = self.config
        with _quiet_experimental():
            return _CmaEsSampler(restart=c.restart, inc_popsize=c.inc_popsize, dim=self.box.dim, seed=self.seed,
                                 popsize=c.population, use_separable_cma=c.separable, lr_adapt=c.lr_adapt,
                                 with_margin=c.with_margin, sigma0=c.sigma0, n_startup_trials=c.n_startup_trials,
                                 warn_independent_sampling=False)

    def _rng_state(self) -> dict[str, Any]:
        s = self._study.sampler
        cma = {"optimizer": cma_to_data(s.optimizer), "restarts": s.restarts, "popsize": s._popsize,
               "evals": dict(s.evals), "regime": s.regime, "large_restarts": s.large_restarts}
        return {**super()._rng_state(), "cma": cma}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        super()._set_rng_state(state)
        s, cma = self._study.sampler, state["cma"]
        s.optimizer = cma_from_data(cma["optimizer"])
        s.restarts, s._popsize = int(cma["restarts"]), cma["popsize"]
        s.evals, s.regime, s.large_restarts = dict(cma["evals"]), cma["regime"], int(cma["large_restarts"])
        if s.restarts:
            s._attr_prefix = f"{s._base_prefix}restart{s.restarts}:"


# ---- Gaussian-process BO ------------------------------------------------------------------------------
class GPConfig(OptimizerConfig):
    """Settings of :class:`optuna.samplers.GPSampler`."""

    population: int = Field(1, ge=1, description="candidates asked per generation")
    n_startup_trials: int = Field(10, ge=0)
    deterministic_objective: bool = False


class _GPSampler(optuna.samplers.GPSampler):
    """GPSampler fitting its kernel from the default start at every ask (no warm start from the last fit)."""

    def sample_relative(self, study, trial, search_space):
        self._gprs_cache_list = None
        self._constraints_gprs_cache_list = None
        return super().sample_relative(study, trial, search_space)


class GPOptimizer(SamplerOptimizer):
    Config = GPConfig
    config: GPConfig
    supports_async = True
    multi_objective = True  # several values: expected hypervolume improvement

    def _sampler(self):
        c = self.config
        with _quiet_experimental():
            return _GPSampler(seed=self.seed, n_startup_trials=c.n_startup_trials,
                              deterministic_objective=c.deterministic_objective, warn_independent_sampling=False)


# ---- quasi-Monte Carlo ------------------------------------------------------------------------------
class QMCConfig(OptimizerConfig):
    population: int = Field(8, ge=1, description="candidates asked per generation")
    qmc_type: str = Field("sobol", pattern="^(sobol|halton)$")
    scramble: bool = True


class QMCOptimizer(SamplerOptimizer):
    Config = QMCConfig
    config: QMCConfig
    supports_async = True
    multi_objective = True  # it does not look at the values

    def _sampler(self):
        c = self.config
        with _quiet_experimental():
            return optuna.samplers.QMCSampler(qmc_type=c.qmc_type, scramble=c.scramble, seed=self.seed,
                                              warn_independent_sampling=False, warn_asynchronous_seeding=False)


# ---- any Optuna sampler ------------------------------------------------------------------------------
class AnySamplerConfig(OptimizerConfig):
    """``optuna:<SamplerName>``: the sampler's keyword arguments (same names), and ``population``."""

    model_config = ConfigDict(extra="allow", frozen=True)
    algorithm: str
    population: int = Field(4, ge=1, description="candidates asked per generation")

    @field_validator("algorithm")
    @classmethod
    def _known(cls, v: str) -> str:
        found = getattr(optuna.samplers, v, None)
        if not (inspect.isclass(found) and issubclass(found, optuna.samplers.BaseSampler)):
            names = sorted(n for n in dir(optuna.samplers) if n.endswith("Sampler") and not n.startswith("_"))
            raise ValueError(f"{v!r} is not a sampler of optuna.samplers ({', '.join(names)})")
        return v

    @property
    def sampler_kwargs(self) -> dict[str, Any]:
        return dict(self.model_extra or {})

    def model_post_init(self, _context) -> None:
        params = inspect.signature(getattr(optuna.samplers, self.algorithm).__init__).parameters
        unknown = [k for k in self.sampler_kwargs if k not in params or k == "seed"]
        if unknown:
            raise ValueError(f"{unknown[0]!r} is not an argument of optuna.samplers.{self.algorithm} "
                             f"({', '.join(p for p in params if p not in ('self', 'seed'))})")


class AnySamplerOptimizer(SamplerOptimizer):
    Config = AnySamplerConfig
    config: AnySamplerConfig
    supports_async = True

    def _sampler(self):
        cls = getattr(optuna.samplers, self.config.algorithm)
        kwargs = self.config.sampler_kwargs
        if "seed" in inspect.signature(cls.__init__).parameters:
            kwargs["seed"] = self.seed
        with _quiet_experimental():
            return cls(**kwargs)


CMAES = Registered(CmaEsOptimizer, summary="CMA-ES (Optuna CmaEsSampler on cmaes; restart: ipop|bipop, separable, "
                                            "lr_adapt, with_margin)")
GP = Registered(GPOptimizer, summary="Gaussian-process Bayesian optimisation (Optuna GPSampler)")
QMC = Registered(QMCOptimizer, summary="quasi-Monte Carlo: scrambled Sobol or Halton points (Optuna QMCSampler)")
OPTUNA = Registered(AnySamplerOptimizer, summary="any Optuna sampler: optuna:<SamplerName>, its arguments as keys",
                    takes_argument=True, argument="<SamplerName>")
