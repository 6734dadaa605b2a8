"""Parameter types of a search space.

Each type knows four things: its Optuna distribution(s), how it encodes into the optimizers'
numeric box, how any point of that box decodes back to a valid value, and how to ``suggest`` it
in a plain Optuna trial. Types are registered in :data:`PARAM_TYPES` by their YAML ``type``.
"""

from __future__ import annotations

import math
from typing import Any, Literal, Optional, Union

import numpy as np
import optuna
from optuna.distributions import (
    BaseDistribution,
    CategoricalDistribution,
    FloatDistribution,
    IntDistribution,
)
from pydantic import BaseModel, ConfigDict, Field, model_validator

Scalar = Union[str, int, float, bool, None]


class Param(BaseModel):
    """Base of every parameter type (one YAML mapping with a ``type`` key)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: str
    #: active only when every named (earlier) parameter takes one of the listed values, e.g.
    #: ``when: {method: pgs}`` or ``when: {method: [kmeans, pgs]}``; inactive, it is not suggested,
    #: not stored, and the objective uses its default
    when: Optional[dict[str, Union[Scalar, list[Scalar]]]] = None

    def active_under(self, config: dict[str, Any]) -> bool:
        """Whether the parameter is active given the (active) values decided before it."""
        return all(name in config and _matches(config[name], allowed) for name, allowed in (self.when or {}).items())

    #: number of box coordinates the parameter occupies
    def width(self) -> int:
        return 1

    def bounds(self) -> tuple[list[float], list[float], list[str], list[int]]:
        raise NotImplementedError

    def decode(self, x: np.ndarray) -> Any:
        raise NotImplementedError

    def encode(self, value: Any) -> np.ndarray:
        raise NotImplementedError

    def distribution(self) -> BaseDistribution:
        raise NotImplementedError

    def suggest(self, trial: optuna.trial.BaseTrial, name: str) -> Any:
        raise NotImplementedError

    # How a value is recorded on a trial: params (with distributions) and user attrs.
    def record(self, name: str, value: Any) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]:
        return {name: value}, {name: self.distribution()}, {}

    def from_record(self, name: str, params: dict[str, Any], attrs: dict[str, Any]) -> Any:
        return params[name]


def _matches(value: Any, allowed: Any) -> bool:
    options = allowed if isinstance(allowed, list) else [allowed]
    return any(value == o and isinstance(value, bool) == isinstance(o, bool) for o in options)


class FloatParam(Param):
    """A real number in ``[low, high]``, optionally searched on a log scale."""

    type: Literal["float"]
    low: float
    high: float
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "FloatParam":
        if not (math.isfinite(self.low) and math.isfinite(self.high)):
            raise ValueError(f"low and high must be finite, got low={self.low}, high={self.high}")
        if self.low >= self.high:
            raise ValueError(f"low must be < high, got low={self.low}, high={self.high}")
        if self.log and self.low <= 0:
            raise ValueError(f"low must be > 0 when log is true, got low={self.low}")
        return self

    def bounds(self):
        lo, hi = (math.log(self.low), math.log(self.high)) if self.log else (self.low, self.high)
        return [lo], [hi], ["real"], [0]

    def decode(self, x):
        v = float(x[0])
        v = math.exp(v) if self.log else v
        return float(min(max(v, self.low), self.high))

    def encode(self, value):
        return np.array([math.log(value) if self.log else float(value)])

    def distribution(self):
        return FloatDistribution(self.low, self.high, log=self.log)

    def suggest(self, trial, name):
        return trial.suggest_float(name, self.low, self.high, log=self.log)


class IntParam(Param):
    """An integer in ``[low, high]`` on a grid of ``step``, optionally on a log scale."""

    type: Literal["int"]
    low: int
    high: int
    step: int = Field(1, ge=1)
    log: bool = False

    @model_validator(mode="after")
    def _check(self) -> "IntParam":
        if self.low > self.high:
            raise ValueError(f"low must be <= high, got low={self.low}, high={self.high}")
        if self.log and (self.low < 1 or self.step != 1):
            raise ValueError(f"log needs low >= 1 and step 1, got low={self.low}, step={self.step}")
        if (self.high - self.low) % self.step:
            raise ValueError(
                f"high - low must be a multiple of step, got low={self.low}, high={self.high}, step={self.step}"
            )
        return self

    def bounds(self):
        if self.log:
            return [math.log(self.low - 0.5 + 1e-9)], [math.log(self.high + 0.5 - 1e-9)], ["int"], [0]
        half = self.step / 2
        return [self.low - half + 1e-9], [self.high + half - 1e-9], ["int"], [0]

    def decode(self, x):
        v = float(x[0])
        if self.log:
            v = round(math.exp(v))
        else:
            v = self.low + round((v - self.low) / self.step) * self.step
        return int(min(max(v, self.low), self.high))

    def encode(self, value):
        return np.array([math.log(value) if self.log else float(value)])

    def distribution(self):
        return IntDistribution(self.low, self.high, step=self.step, log=self.log)

    def suggest(self, trial, name):
        return trial.suggest_int(name, self.low, self.high, step=self.step, log=self.log)


class CategoricalParam(Param):
    """One of a list of choices (strings, numbers, booleans or null)."""

    type: Literal["categorical"]
    choices: list[Scalar] = Field(min_length=1)

    @model_validator(mode="after")
    def _check(self) -> "CategoricalParam":
        if len(set(map(repr, self.choices))) != len(self.choices):
            raise ValueError(f"choices must be distinct, got {self.choices}")
        return self

    def bounds(self):
        return [0.0], [float(len(self.choices))], ["choice"], [len(self.choices)]

    def decode(self, x):
        i = int(math.floor(float(x[0])))
        return self.choices[min(max(i, 0), len(self.choices) - 1)]

    def encode(self, value):
        return np.array([self.choices.index(value) + 0.5])

    def distribution(self):
        return CategoricalDistribution(self.choices)

    def suggest(self, trial, name):
        return trial.suggest_categorical(name, self.choices)


class BoolParam(Param):
    """True or false."""

    type: Literal["bool"]

    def bounds(self):
        return [0.0], [1.0], ["binary"], [0]

    def decode(self, x):
        return bool(x[0] >= 0.5)

    def encode(self, value):
        return np.array([1.0 if value else 0.0])

    def distribution(self):
        return CategoricalDistribution([False, True])

    def suggest(self, trial, name):
        return trial.suggest_categorical(name, [False, True])


class MaskParam(Param):
    """A binary selection vector (e.g. which features to keep).

    ``length`` is fixed, or ``auto`` to take it from the objective at run time (the feature
    count). A mask is recorded compactly: the param ``<name>.n_selected`` plus the user attr
    ``<name>`` holding the bits as a hex string -- never one Optuna parameter per bit.

    In a plain Optuna study (``suggest``) a mask is parametrised by how many bits to keep and a
    seed that picks which: ``<name>.n_selected`` and ``<name>.seed``. Metaheuristics search the
    bits themselves.
    """

    type: Literal["mask"]
    length: Union[int, Literal["auto"]] = "auto"
    min_selected: int = Field(1, ge=0)

    @model_validator(mode="after")
    def _check(self) -> "MaskParam":
        if isinstance(self.length, int) and self.length < 1:
            raise ValueError(f"length must be >= 1 or 'auto', got {self.length}")
        if isinstance(self.length, int) and self.min_selected > self.length:
            raise ValueError(f"min_selected must be <= length, got {self.min_selected} > {self.length}")
        return self

    @property
    def n(self) -> int:
        if not isinstance(self.length, int):
            raise ValueError("mask length is 'auto' and was not bound to the objective's feature count")
        return self.length

    def width(self):
        return self.n

    def bounds(self):
        return [0.0] * self.n, [1.0] * self.n, ["binary"] * self.n, [0] * self.n

    def decode(self, x):
        return np.asarray(x[: self.n] >= 0.5, dtype=bool)

    def encode(self, value):
        return np.asarray(value, dtype=float)

    def distribution(self):
        return IntDistribution(0, self.n)

    def record(self, name, value):
        bits = np.asarray(value, dtype=bool)
        return (
            {f"{name}.n_selected": int(bits.sum())},
            {f"{name}.n_selected": self.distribution()},
            {name: pack_bits(bits)},
        )

    def from_record(self, name, params, attrs):
        if name in attrs:
            return unpack_bits(attrs[name], self.n)
        return _seeded_mask(self.n, params[f"{name}.n_selected"], params[f"{name}.seed"])

    def suggest(self, trial, name):
        k = trial.suggest_int(f"{name}.n_selected", max(self.min_selected, 1), self.n)
        seed = trial.suggest_int(f"{name}.seed", 0, 2**31 - 1)
        return _seeded_mask(self.n, k, seed)


def _seeded_mask(n: int, k: int, seed: int) -> np.ndarray:
    bits = np.zeros(n, dtype=bool)
    bits[np.random.default_rng(seed).choice(n, size=int(k), replace=False)] = True
    return bits


def pack_bits(bits: np.ndarray) -> str:
    """Bits as a hex string (``n`` bits -> ceil(n/4) characters).

    >>> pack_bits(np.array([1, 0, 1, 1], dtype=bool))
    'b0'
    """
    return np.packbits(np.asarray(bits, dtype=np.uint8)).tobytes().hex()


def unpack_bits(text: str, n: int) -> np.ndarray:
    return np.unpackbits(np.frombuffer(bytes.fromhex(text), dtype=np.uint8))[:n].astype(bool)


#: Registered parameter types by their YAML ``type`` name.
PARAM_TYPES: dict[str, type[Param]] = {
    "float": FloatParam,
    "int": IntParam,
    "categorical": CategoricalParam,
    "bool": BoolParam,
    "mask": MaskParam,
}

AnyParam = Union[FloatParam, IntParam, CategoricalParam, BoolParam, MaskParam]
