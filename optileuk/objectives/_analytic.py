"""Analytic test functions over a declared search space (tests, demos, optimizer comparisons).

Numeric parameters (``float``, ``int``) form the vector ``x`` in the order of the space; the
optimum is at ``x_i = shift``. Other types add a penalty with its optimum at a known value so
that mixed spaces stay testable: a ``categorical`` adds its choice index (best: the first
choice), a ``bool`` adds 1 when false, a ``mask`` adds the fraction of bits that differ from
the pattern 1010... (best: every even bit selected).
"""

from __future__ import annotations

import time
from typing import Any, Literal, Mapping

import numpy as np
from pydantic import Field

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


def _unit_hash(config: Mapping[str, Any]) -> float:
    """A number in [0, 1) fixed by the config: which candidates fail is deterministic."""
    import hashlib

    text = repr(sorted((k, v.tolist() if isinstance(v, np.ndarray) else v) for k, v in config.items()))
    return int(hashlib.sha256(text.encode()).hexdigest()[:8], 16) / 16**8


FUNCTIONS = {"sphere": sphere, "rastrigin": rastrigin, "ackley": ackley, "rosenbrock": rosenbrock}


class AnalyticConfig(ObjectiveConfig):
    function: Literal["sphere", "rastrigin", "ackley", "rosenbrock"] = "sphere"
    shift: float = Field(0.0, description="location of the optimum in every numeric coordinate")
    sleep: float = Field(0.0, ge=0, description="seconds to wait per evaluation (imitates a costly objective)")
    fail_rate: float = Field(0.0, ge=0, le=1, description="share of candidates that raise (tests of failure handling)")
    work: float = Field(0.0, ge=0, description="seconds of CPU busy-work per evaluation (imitates a CPU-bound objective)")


class AnalyticObjective(Objective):
    """Minimise a classic test function; the minimum value is 0.

    Example:
        >>> space = SearchSpace.from_dict({"parameters": {"x": {"type": "float", "low": -5, "high": 5}}})
        >>> AnalyticObjective({"function": "sphere"}).evaluate({"x": 2.0}).value
        4.0
    """

    Config = AnalyticConfig
    config: AnalyticConfig

    def check_space(self, space: SearchSpace) -> list[str]:
        if not any(p.type in ("float", "int") for p in space.params.values()):
            return ["must have at least one float or int parameter for the analytic objective"]
        return []

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        if self.config.sleep:
            time.sleep(self.config.sleep)
        if self.config.work:
            end = time.perf_counter() + self.config.work
            while time.perf_counter() < end:
                pass
        if self.config.fail_rate and _unit_hash(config) < self.config.fail_rate:
            raise RuntimeError(f"injected failure (fail_rate={self.config.fail_rate})")
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
        return Score(FUNCTIONS[self.config.function](x) + penalty)

    def _is_categorical(self, name: str) -> bool:
        space = self._space
        return space is not None and name in space.params and space.params[name].type == "categorical"

    def _choice_index(self, name: str, value: Any) -> int:
        space = self._space
        if space is None or name not in space.params:
            return 0
        return space.params[name].choices.index(value)
