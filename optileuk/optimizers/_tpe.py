"""Optuna's TPE sampler as a ``step(evaluate)`` optimizer.

The adapter keeps a private in-memory Optuna study over the box coordinates (real coordinates
as floats, ``choice`` coordinates and bits as categoricals) and asks it for ``population``
candidates per generation; with Optuna 5's defaults TPE is multivariate and uses the constant
liar, so a batch of candidates asked together is spread out. The runner records the real
trials in the real study; this private study is only the sampler's memory.

Asynchronously (``runner: {mode: async}``) each free worker gets one ``ask``; the candidates
still being evaluated are RUNNING trials of the private study, which the constant liar accounts for.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.distributions import CategoricalDistribution, FloatDistribution
from pydantic import Field

from optileuk.optimizers._base import Optimizer, OptimizerConfig, Registered, as_minimise


class TPEConfig(OptimizerConfig):
    """Settings passed to :class:`optuna.samplers.TPESampler` (same names)."""

    population: int = Field(1, ge=1, description="candidates asked per generation (run in parallel)")
    n_startup_trials: int = Field(10, ge=0)
    n_ei_candidates: int = Field(24, ge=1)
    multivariate: bool = True
    group: bool = False
    constant_liar: bool = True


class TPEOptimizer(Optimizer):
    Config = TPEConfig
    config: TPEConfig
    supports_async = True
    multi_objective = True  # Optuna's TPE handles several values (MOTPE)

    def __init__(self, box, config, *, seed, max_generations=None, objectives: int = 1):
        super().__init__(box, config, seed=seed, max_generations=max_generations, objectives=objectives)
        optuna.logging.set_verbosity(optuna.logging.WARNING)
        self._dists: dict[str, Any] = {}
        for i, (kind, lo, hi, n) in enumerate(zip(box.kinds, box.lower, box.upper, box.choices)):
            if kind == "binary":
                self._dists[f"x{i}"] = CategoricalDistribution([0, 1])
            elif kind == "choice":
                self._dists[f"x{i}"] = CategoricalDistribution(list(range(n)))
            else:
                self._dists[f"x{i}"] = FloatDistribution(float(lo), float(max(hi, lo + 1e-12)))
        self._study = self._new_study(self._sampler())

    @property
    def population_size(self) -> int:
        return self.config.population

    def _sampler(self) -> optuna.samplers.TPESampler:
        c = self.config
        with _quiet_experimental():
            return optuna.samplers.TPESampler(
                n_startup_trials=c.n_startup_trials, n_ei_candidates=c.n_ei_candidates,
                multivariate=c.multivariate, group=c.group, constant_liar=c.constant_liar,
                seed=self.seed)

    def _new_study(self, sampler) -> optuna.Study:
        return optuna.create_study(sampler=sampler, directions=["minimize"] * self.objectives)

    def _told(self, value):
        return float(value) if self.objectives == 1 else [float(v) for v in np.ravel(value)]

    def _vector(self, params: dict[str, Any]) -> np.ndarray:
        x = np.empty(self.box.dim)
        for i, kind in enumerate(self.box.kinds):
            v = params[f"x{i}"]
            x[i] = v + 0.5 if kind == "choice" else float(v)
        return x

    def _params(self, x: np.ndarray) -> dict[str, Any]:
        """Inverse of :meth:`_vector` for a box point."""
        params: dict[str, Any] = {}
        for i, (kind, n) in enumerate(zip(self.box.kinds, self.box.choices)):
            dist = self._dists[f"x{i}"]
            if kind == "binary":
                params[f"x{i}"] = int(x[i] >= 0.5)
            elif kind == "choice":
                params[f"x{i}"] = int(min(max(np.floor(x[i]), 0), n - 1))
            else:
                params[f"x{i}"] = float(min(max(x[i], dist.low), dist.high))
        return params

    def ask(self):
        trial = self._study.ask(self._dists)
        return trial.number, self._vector(trial.params), {}

    def tell(self, token: int, value) -> None:
        self._study.tell(token, self._told(value))

    def pending(self) -> dict[int, np.ndarray]:
        running = self._study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,))
        return {t.number: self._vector(t.params) for t in running}

    def inject(self, x, value, info) -> None:
        self._study.add_trial(optuna.trial.create_trial(params=self._params(np.asarray(x, dtype=float)),
                                                        distributions=self._dists, values=np.ravel(value).tolist()))

    def step(self, evaluate) -> None:
        trials = [self._study.ask(self._dists) for _ in range(self.population_size)]
        values = np.asarray(evaluate(np.array([self._vector(t.params) for t in trials])), dtype=float)
        values = values.reshape(len(trials), self.objectives) if self.objectives > 1 else as_minimise(values)
        for t, v in zip(trials, values):
            self._study.tell(t, self._told(v))

    def state_dict(self) -> dict[str, Any]:
        """The private study's trials (box coordinates, state, value) and the sampler's RNGs, as data."""
        return {**self._trials_state(), **self._rng_state()}

    def _trials_state(self) -> dict[str, Any]:
        trials = self._study.get_trials(deepcopy=False)
        x = np.array([[t.params[f"x{i}"] for i in range(self.box.dim)] for t in trials], dtype=float)
        return {"x": x.reshape(len(trials), self.box.dim),
                "running": np.array([t.state == optuna.trial.TrialState.RUNNING for t in trials], dtype=bool),
                "value": np.array([[np.nan] * self.objectives if t.values is None else t.values for t in trials],
                                  dtype=float).reshape(len(trials), self.objectives)}

    def _rng_state(self) -> dict[str, Any]:
        sampler = self._study.sampler
        return {"rng": sampler._rng.rng.get_state(), "random_rng": sampler._random_sampler._rng.rng.get_state()}

    def _set_rng_state(self, state: dict[str, Any]) -> None:
        sampler = self._study.sampler
        sampler._rng.rng.set_state(state["rng"])
        sampler._random_sampler._rng.rng.set_state(state["random_rng"])

    def load_state_dict(self, state: dict[str, Any]) -> None:
        sampler = self._sampler()
        self._study = study = self._new_study(sampler)
        for i, (x, running, value) in enumerate(zip(state["x"], state["running"], state["value"])):
            params, attrs = self._params(x), self._system_attrs(state, i)
            if running:  # asked and not told: asked again with the same point, under the same number
                study.enqueue_trial(params)
                trial = study.ask(self._dists)
                for name, attr in attrs.items():
                    study._storage.set_trial_system_attr(trial._trial_id, name, attr)
            else:
                study.add_trial(optuna.trial.create_trial(params=params, distributions=self._dists,
                                                          values=np.ravel(value).tolist(), system_attrs=attrs))
        self._restore_study_attrs(state)
        self._set_rng_state(state)  # after the asks above, which draw from it

    def _system_attrs(self, state: dict[str, Any], i: int) -> dict[str, Any]:
        return {}  # the sampler's own per-trial memory (none for TPE)

    def _restore_study_attrs(self, state: dict[str, Any]) -> None:
        pass


class _quiet_experimental:
    def __enter__(self):
        import warnings

        self._w = warnings.catch_warnings()
        self._w.__enter__()
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)

    def __exit__(self, *exc):
        self._w.__exit__(*exc)


TPE = Registered(TPEOptimizer, summary="Bayesian TPE (Optuna TPESampler; multivariate, constant liar)")


class NSGA2SamplerConfig(OptimizerConfig):
    """Settings passed to :class:`optuna.samplers.NSGAIISampler` (same names)."""

    population: int = Field(20, ge=2, description="NSGA-II population; candidates asked per generation")
    crossover_prob: float = Field(0.9, ge=0, le=1)
    swapping_prob: float = Field(0.5, ge=0, le=1)
    mutation_prob: float | None = Field(None, ge=0, le=1, description="default: 1 / number of parameters")


class NSGA2SamplerOptimizer(TPEOptimizer):
    """Optuna's NSGAIISampler behind the same adapter as TPE (its private study is the sampler's
    memory). Its generations and cached parent populations live in Optuna's system attributes;
    the state saves them as data beside the points and values."""

    Config = NSGA2SamplerConfig
    config: NSGA2SamplerConfig

    def _sampler(self) -> optuna.samplers.NSGAIISampler:
        c = self.config
        return optuna.samplers.NSGAIISampler(population_size=c.population, crossover_prob=c.crossover_prob,
                                             swapping_prob=c.swapping_prob, mutation_prob=c.mutation_prob,
                                             seed=self.seed)

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        key = self._study.sampler._get_generation_key()
        state["generation"] = np.array([t.system_attrs.get(key, -1) for t in self._study.get_trials(deepcopy=False)],
                                       dtype=np.int64)
        state["study_attrs"] = dict(self._study._storage.get_study_system_attrs(self._study._study_id))
        return state

    def _system_attrs(self, state: dict[str, Any], i: int) -> dict[str, Any]:
        generation = int(state["generation"][i])
        return {self._study.sampler._get_generation_key(): generation} if generation >= 0 else {}

    def _restore_study_attrs(self, state: dict[str, Any]) -> None:
        for name, value in state["study_attrs"].items():
            self._study._storage.set_study_system_attr(self._study._study_id, name, value)


OPTUNA_NSGA2 = Registered(NSGA2SamplerOptimizer, summary="NSGA-II (Optuna NSGAIISampler; one or several objectives)")
