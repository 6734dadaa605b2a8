"""Analytic test functions over a declared search space (tests, demos, optimizer comparisons).

Numeric parameters (``float``, ``int``) form the vector ``x`` in the order of the space; the
optimum is at ``x_i = shift``. Other types add a penalty with its optimum at a known value so
that mixed spaces stay testable: a ``categorical`` adds its choice index (best: the first
choice), a ``bool`` adds 1 when false, a ``mask`` adds the fraction of bits that differ from
the pattern 1010... (best: every even bit selected).

For tests and benchmarks of the runner it can imitate a costly objective: ``sleep`` (seconds, or
the median of a lognormal time with ``sleep_sigma``), ``work`` (CPU busy-work), ``fail_rate``,
and ``steps`` (per-step reports of a value falling towards the final one, like training epochs,
so pruners can prune it).
"""

from __future__ import annotations

import math
import time
from statistics import NormalDist
from typing import Any, Literal, Mapping, Optional

import numpy as np
import optuna
from pydantic import Field, model_validator

from optileuk.objectives._base import Objective, ObjectiveConfig, Score
from optileuk.space import SearchSpace


def sphere(x: np.ndarray) -> float:
    return float(np.sum(x**2))


def rastrigin(x: np.ndarray) -> float:
    return float(10 * x.size + np.sum(x**2 - 10 * np.cos(2 * np.pi * x)))


def ackley(x: np.ndarray) -> float:
    n = max(x.size, 1)
    return float(-20 * np.exp(-0.2 * np.sqrt(np.sum(x**2) / n)) - np.exp(np.sum(np.cos(2 * np.pi * x)) / n) + 20 + np.e)


def rosenbrock(x: np.ndarray) -> float:
    x = x + 1.0  # optimum of the classic form is at 1: move it to 0 like the others
    return float(np.sum(100 * (x[1:] - x[:-1] ** 2) ** 2 + (1 - x[:-1]) ** 2))


def _unit_hash(config: Mapping[str, Any], salt: str = "") -> float:
    """A number in [0, 1) fixed by the config: which candidates fail (or how long they take) is deterministic."""
    import hashlib

    text = salt + repr(sorted((k, v.tolist() if isinstance(v, np.ndarray) else v) for k, v in config.items()))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8


FUNCTIONS = {"sphere": sphere, "rastrigin": rastrigin, "ackley": ackley, "rosenbrock": rosenbrock}


class AnalyticConfig(ObjectiveConfig):
    function: Literal["sphere", "rastrigin", "ackley", "rosenbrock"] = "sphere"
    shift: float = Field(0.0, description="location of the optimum in every numeric coordinate")
    sleep: float = Field(0.0, ge=0, description="seconds to wait per evaluation (imitates a costly objective)")
    fail_rate: float = Field(0.0, ge=0, le=1, description="share of candidates that raise (tests of failure handling)")
    work: float = Field(0.0, ge=0, description="seconds of CPU time busy-working per evaluation (imitates a CPU-bound objective)")
    sleep_sigma: float = Field(0.0, ge=0, description="> 0: each candidate sleeps a lognormal time (median sleep, "
                                                      "this log-spread), fixed by its parameters")
    sleep_range: Optional[tuple[float, float]] = Field(None, description="[low, high] seconds the lognormal time is clipped to")
    steps: int = Field(0, ge=0, description="> 0: report this many intermediate values (like epochs) so pruners work")
    noise: float = Field(0.0, ge=0, description="> 0: the value is the mean over noisy folds, f(x) + a_fold + e_(x,fold), "
                         "both normal with this spread and fixed by the fold (a) and the config and fold (e): a small "
                         "data set's cross-validation, where the lowest mean is partly luck (tests of selection rules)")
    folds: int = Field(5, ge=2, description="noisy folds per repeat (with noise)")
    repeats: int = Field(1, ge=1, description="repeats of the noisy folds (with noise)")
    defaults: dict[str, Any] = Field(default_factory=dict, description="the objective's defaults: the configuration "
                                     "assess --untuned and selection: anchored use (empty: it has none)")

    @model_validator(mode="after")
    def _range(self) -> "AnalyticConfig":
        if self.sleep_range is not None and not 0 <= self.sleep_range[0] <= self.sleep_range[1]:
            raise ValueError(f"sleep_range must be [low, high] with 0 <= low <= high, got {list(self.sleep_range)}")
        return self


class AnalyticObjective(Objective):
    """Minimise a classic test function; the minimum value is 0.

    Example:
        >>> space = SearchSpace.from_dict({"parameters": {"x": {"type": "float", "low": -5, "high": 5}}})
        >>> AnalyticObjective({"function": "sphere"}).evaluate({"x": 2.0}).value
        4.0
    """
    deterministic = True  # seeded: the same config scores the same

    Config = AnalyticConfig
    config: AnalyticConfig
    VALUES = {"f2": "minimize"}  # the function around shift + 2 (multi-objective tests)

    resamples = True  # with noise: a repeat is another draw of the fold effects

    def check_space(self, space: SearchSpace) -> list[str]:
        if not any(p.type in ("float", "int") for p in space.params.values()):
            return ["must have at least one float or int parameter for the analytic objective"]
        return []

    def default_params(self) -> dict[str, Any] | None:
        return dict(self.config.defaults) or None

    def _noisy(self, config: Mapping[str, Any], value: float, repeat: int | None) -> tuple[float, dict[str, Any]]:
        """The mean over noisy folds (of every repeat, or of one ``repeat``) and their attrs."""
        from optileuk.folds import corrected_se

        c = self.config
        repeats = range(c.repeats) if repeat is None else [repeat]
        values = []
        for r in repeats:
            for j in range(c.folds):
                shared = np.random.default_rng([self.seed, r, j]).normal(0.0, c.noise)
                own = NormalDist().inv_cdf(min(max(_unit_hash(config, f"fold {r} {j}"), 1e-9), 1 - 1e-9)) * c.noise
                values.append(value + shared + own)
        share = 1.0 / (c.folds - 1)
        return float(np.mean(values)), {"fold_values": values, "n_folds": len(values), "val_share": share,
                                        "value_se": corrected_se(values, share), "true_value": value}

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        from optileuk.folds import REPEAT, options

        c = self.config
        config, opts = options(config)
        seconds = self._seconds(config)
        if c.fail_rate and _unit_hash(config) < c.fail_rate:
            self._spend(seconds)
            raise RuntimeError(f"injected failure (fail_rate={c.fail_rate})")
        value = self._value(config)
        for step in range(c.steps):  # like epochs: a value falling towards the final one
            self._spend(seconds, 1 / c.steps)
            if trial is not None:
                trial.report(value + (c.steps - 1 - step) / c.steps, step)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after step {step + 1}")
        if not c.steps:
            self._spend(seconds)
        attrs = {"sleep_seconds": round(seconds, 6)} if c.sleep_sigma else {}
        if c.noise:
            value, noisy = self._noisy(config, value, opts.get(REPEAT))
            attrs.update(noisy)
        if self.objectives and "f2" in self.objectives:
            attrs["f2"] = self._f2(config)
        return Score(value, attrs)

    def _seconds(self, config: Mapping[str, Any]) -> float:
        c = self.config
        if not c.sleep_sigma:
            return c.sleep
        z = NormalDist().inv_cdf(min(max(_unit_hash(config, "sleep"), 1e-9), 1 - 1e-9))
        seconds = c.sleep * math.exp(c.sleep_sigma * z)
        return float(np.clip(seconds, *c.sleep_range)) if c.sleep_range else seconds

    def _spend(self, seconds: float, share: float = 1.0) -> None:
        """Sleep and busy-work for ``share`` of one evaluation (work counts this thread's CPU time:
        processes that share a core each take longer, as real CPU-bound objectives do)."""
        if seconds:
            time.sleep(seconds * share)
        end = time.thread_time() + self.config.work * share
        while time.thread_time() < end:
            pass

    def _value(self, config: Mapping[str, Any]) -> float:
        numeric, penalty = [], 0.0
        for name, value in config.items():
            if isinstance(value, np.ndarray):
                target = np.arange(value.size) % 2 == 0
                penalty += float(np.mean(value != target))
            elif isinstance(value, bool):
                penalty += 0.0 if value else 1.0
            elif isinstance(value, (int, float)) and not self._is_categorical(name):
                numeric.append(float(value))
            else:
                penalty += float(self._choice_index(name, value))
        x = np.asarray(numeric) - self.config.shift
        return FUNCTIONS[self.config.function](x) + penalty

    def _f2(self, config: Mapping[str, Any]) -> float:
        """The second value of multi-objective tests: the same function around ``shift + 2``
        (the Pareto set is the segment between the two optima)."""
        x = [float(v) for n, v in config.items() if isinstance(v, (int, float)) and not isinstance(v, bool)
             and not self._is_categorical(n)]
        return FUNCTIONS[self.config.function](np.asarray(x) - self.config.shift - 2.0)

    def _is_categorical(self, name: str) -> bool:
        space = self._space
        return space is not None and name in space.params and space.params[name].type == "categorical"

    def _choice_index(self, name: str, value: Any) -> int:
        space = self._space
        if space is None or name not in space.params:
            return 0
        return space.params[name].choices.index(value)
