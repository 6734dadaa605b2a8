"""A search space: named, typed parameters with an encoding to the optimizers' box."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any, Mapping

import numpy as np
import optuna
from optuna.distributions import BaseDistribution
from pydantic import TypeAdapter, ValidationError

from optileuk.box import Box
from optileuk.errors import ConfigError, Problem
from optileuk.space._params import PARAM_TYPES, MaskParam, Param
from optileuk.validation import join, problems_from, read_yaml


class SearchSpace:
    """An ordered set of named parameters.

    Example:
        >>> space = SearchSpace.from_dict({"parameters": {
        ...     "k": {"type": "int", "low": 2, "high": 6},
        ...     "lr": {"type": "float", "low": 1e-4, "high": 1e-1, "log": True}}})
        >>> cfg = space.decode(space.box.lower)
        >>> cfg["k"], round(cfg["lr"], 6)
        (2, 0.0001)
    """

    def __init__(self, params: Mapping[str, Param], source: str = "<inline>"):
        self.params: dict[str, Param] = dict(params)
        self.source = source
        self._slices: dict[str, slice] | None = None

    # ---- construction -------------------------------------------------------------------------
    @classmethod
    def from_file(cls, path: str | Path, *, prefix: tuple = ()) -> "SearchSpace":
        data = read_yaml(path, what="search-space file")
        return cls.from_dict(data, source=str(path), prefix=prefix)

    @classmethod
    def from_dict(cls, data: Any, *, source: str = "<inline>", prefix: tuple = ()) -> "SearchSpace":
        """Validate a mapping ``{parameters: {name: {type: ..., ...}}}``; all problems at once."""
        if not isinstance(data, dict) or set(data) - {"parameters"}:
            if isinstance(data, dict):
                bad = sorted(set(data) - {"parameters"})
                raise ConfigError([Problem(source, join(*prefix, k), "is not a known key (valid keys: parameters)") for k in bad])
            raise ConfigError([Problem(source, join(*prefix), "must be a mapping with the key 'parameters'", data)])
        params = data.get("parameters")
        if not isinstance(params, dict) or not params:
            raise ConfigError([Problem(source, join(*prefix, "parameters"), "must be a non-empty mapping of name -> parameter", params)])
        problems: list[Problem] = []
        parsed: dict[str, Param] = {}
        for name, spec in params.items():
            where = (*prefix, "parameters", str(name))
            if not isinstance(name, str) or not name or "." in name:
                problems.append(Problem(source, join(*where), "name must be a non-empty string without '.'", name))
                continue
            if not isinstance(spec, dict):
                problems.append(Problem(source, join(*where), "must be a mapping with a 'type' key", spec))
                continue
            kind = spec.get("type")
            if kind not in PARAM_TYPES:
                rule = "is required" if kind is None else f"must be one of {', '.join(PARAM_TYPES)}"
                problems.append(Problem(source, join(*where, "type"), rule, *(() if kind is None else (kind,))))
                continue
            try:
                parsed[name] = TypeAdapter(PARAM_TYPES[kind]).validate_python(spec)
            except ValidationError as exc:
                problems.extend(_param_problems(exc, source, where, PARAM_TYPES[kind]))
        problems += _condition_problems(parsed, source, prefix)
        if problems:
            raise ConfigError(problems)
        return cls(parsed, source)

    def bind(self, lengths: Mapping[str, int]) -> "SearchSpace":
        """Fill ``length: auto`` masks from the objective (e.g. its feature count)."""
        out: dict[str, Param] = {}
        for name, p in self.params.items():
            if isinstance(p, MaskParam) and p.length == "auto":
                if name not in lengths:
                    raise ConfigError([Problem(self.source, join("parameters", name, "length"),
                                               "is 'auto' but the objective supplies no length for this mask")])
                p = p.model_copy(update={"length": int(lengths[name])})
            out[name] = p
        return SearchSpace(out, self.source)

    # ---- the box ------------------------------------------------------------------------------
    @property
    def slices(self) -> dict[str, slice]:
        if self._slices is None:
            pos, out = 0, {}
            for name, p in self.params.items():
                out[name] = slice(pos, pos + p.width())
                pos += p.width()
            self._slices = out
        return self._slices

    @property
    def box(self) -> Box:
        lo, hi, kinds, choices = [], [], [], []
        for p in self.params.values():
            a, b, k, c = p.bounds()
            lo += a
            hi += b
            kinds += k
            choices += c
        return Box(np.array(lo), np.array(hi), tuple(kinds), tuple(choices))

    def decode(self, x: np.ndarray) -> dict[str, Any]:
        """Any point (clipped to the box) -> a valid configuration of the active parameters (the
        coordinates of inactive ones are carried by the optimizer and ignored)."""
        x = np.asarray(x, dtype=float)
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if p.active_under(out):
                out[name] = p.decode(x[self.slices[name]])
        return out

    def encode(self, config: Mapping[str, Any]) -> np.ndarray:
        """A box point of ``config``; a parameter it lacks (inactive) sits at its lowest value."""
        return np.concatenate([p.encode(config[name] if name in config else p.decode(np.asarray(p.bounds()[0])))
                               for name, p in self.params.items()])

    def inactive(self, config: Mapping[str, Any]) -> list[str]:
        """Parameters of the space that ``config`` leaves inactive (by their ``when``)."""
        return [name for name in self.params if name not in config]

    @property
    def conditional(self) -> bool:
        return any(p.when for p in self.params.values())

    # ---- Optuna -------------------------------------------------------------------------------
    def distributions(self) -> dict[str, BaseDistribution]:
        out: dict[str, BaseDistribution] = {}
        for name, p in self.params.items():
            out.update(p.record(name, p.decode(np.asarray(p.bounds()[0])))[1])
        return out

    def record(self, config: Mapping[str, Any]) -> tuple[dict[str, Any], dict[str, BaseDistribution], dict[str, Any]]:
        """How a config is stored on a trial: (params, distributions, user attrs)."""
        params: dict[str, Any] = {}
        dists: dict[str, BaseDistribution] = {}
        attrs: dict[str, Any] = {}
        for name, p in self.params.items():
            if name not in config:  # inactive: not a trial parameter
                continue
            a, b, c = p.record(name, config[name])
            params.update(a)
            dists.update(b)
            attrs.update(c)
        if self.conditional:
            attrs["inactive"] = self.inactive(config)
        return params, dists, attrs

    def from_record(self, params: Mapping[str, Any], attrs: Mapping[str, Any]) -> dict[str, Any]:
        """The config of a stored trial (inverse of :meth:`record`)."""
        out: dict[str, Any] = {}
        for name, p in self.params.items():
            if p.active_under(out):
                out[name] = p.from_record(name, dict(params), dict(attrs))
        return out

    def suggest(self, trial: optuna.trial.BaseTrial) -> dict[str, Any]:
        """Suggest a full configuration in a plain Optuna trial.

        Example:
            >>> space = SearchSpace.from_dict({"parameters": {"x": {"type": "float", "low": 0, "high": 1}}})
            >>> space.suggest(optuna.trial.FixedTrial({"x": 0.5}))
            {'x': 0.5}
        """
        out: dict[str, Any] = {}
        for name, p in self.params.items():  # define-by-run: an inactive parameter is never suggested
            if p.active_under(out):
                out[name] = p.suggest(trial, name)
        return out

    # ---- identity -----------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        # ``when`` only where set: spaces without conditions keep their fingerprint
        return {"parameters": {n: p.model_dump(mode="json", exclude={"when"} if p.when is None else None)
                               for n, p in self.params.items()}}

    def fingerprint(self) -> str:
        text = json.dumps(self.to_dict(), sort_keys=True)
        return hashlib.sha256(text.encode()).hexdigest()[:16]

    def __repr__(self) -> str:
        return f"SearchSpace({', '.join(f'{n}: {p.type}' for n, p in self.params.items())})"


def _condition_problems(params: Mapping[str, Param], source: str, prefix: tuple) -> list[Problem]:
    """``when`` names an earlier categorical, bool or int parameter and values it can take."""
    out: list[Problem] = []
    names = list(params)
    for i, (name, p) in enumerate(params.items()):
        for ref, allowed in (p.when or {}).items():
            where = join(*prefix, "parameters", name, "when", ref)
            if ref not in params or names.index(ref) >= i:
                rule = ("must name a parameter defined before this one (conditions are decided in order)"
                        if ref in params else f"is not a parameter of this space (parameters: {', '.join(names)})")
                out.append(Problem(source, where, rule, ref))
                continue
            q = params[ref]
            if q.type not in ("categorical", "bool", "int"):
                out.append(Problem(source, where, f"must name a categorical, bool or int parameter, not a {q.type}", ref))
                continue
            values = allowed if isinstance(allowed, list) else [allowed]
            domain = (q.choices if q.type == "categorical" else [False, True] if q.type == "bool"
                      else list(range(q.low, q.high + 1, q.step)) if not q.log else list(range(q.low, q.high + 1)))
            bad = [v for v in values if not any(_same(v, d) for d in domain)]
            if bad or not values:
                out.append(Problem(source, where, f"must list values '{ref}' can take ({_short(domain)})", allowed))
    return out


def _same(a: Any, b: Any) -> bool:
    return a == b and isinstance(a, bool) == isinstance(b, bool)


def _short(values: list) -> str:
    return ", ".join(map(str, values)) if len(values) <= 8 else f"{values[0]} .. {values[-1]}"


def _param_problems(exc: ValidationError, source: str, where: tuple, model: type[Param]) -> list[Problem]:
    problems = problems_from(exc, source, where)
    out = []
    for p in problems:
        if p.rule.startswith("is not a known key"):
            p = Problem(p.file, p.path, f"is not a known key (valid keys: {', '.join(model.model_fields)})")
        elif p.rule.startswith("Value error, "):
            p = Problem(p.file, p.path, p.rule.removeprefix("Value error, "))
        out.append(p)
    return out
