"""Study files: one YAML file naming an objective, a search space, an optimizer and a budget.

Example (``studies/rastrigin_pso.yaml``)::

    name: rastrigin-pso
    seed: 1
    objective: {type: analytic, function: rastrigin}
    search_space: ../search_spaces/box10.yaml
    optimizer: {name: pso, population: 20}
    budget: {trials: 600}

Everything is validated before anything runs, and every problem is reported at once.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal, Optional, Union

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, field_validator, model_validator

from optileuk.errors import ConfigError, Problem
from optileuk.registry import OBJECTIVES, OPTIMIZERS
from optileuk.selection import Rule, parse_rules, rule_problems
from optileuk.space import SearchSpace
from optileuk.storage import DEFAULT_STORAGE, redact
from optileuk.validation import join, problems_from, read_yaml, validate


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """When to stop: whichever limit comes first. ``trials`` counts finished trials."""

    trials: Optional[int] = Field(None, ge=1)
    generations: Optional[int] = Field(None, ge=1)
    timeout: Optional[float] = Field(None, gt=0, description="seconds of this run")

    @model_validator(mode="after")
    def _one(self) -> "Budget":
        if self.trials is None and self.generations is None and self.timeout is None:
            raise ValueError("needs at least one of trials, generations, timeout")
        return self


LOCAL_CLUSTER_KEYS = ("workers", "devices", "trials_per_device", "listen")  # what starts the driver's own cluster


class RunnerConfig(_Strict):
    """Where and how candidates are evaluated.

    No ``workers``, ``devices`` or ``scheduler``: one after another in the driver's process.
    Otherwise on Dask: a local cluster of one single-threaded worker process per device slot,
    or the cluster at ``scheduler``.
    """

    mode: Literal["generational", "async"] = Field(
        "generational", description="async: a new candidate whenever a worker is free (tpe, random, ga, pso)")
    workers: Optional[int] = Field(None, ge=1, description="local Dask worker processes (default: one per device slot)")
    devices: Union[Literal["auto", "cpu"], list[str], None] = Field(
        None, description="auto (every CUDA device, else the CPU), cpu, or a list such as [cuda:0, cuda:1]")
    trials_per_device: int = Field(1, ge=1, description="worker processes per device")
    scheduler: Optional[str] = Field(None, description="a Dask cluster the user started: tcp://host:8786 or a scheduler file")
    listen: Optional[str] = Field(None, description="address of the local cluster's scheduler, e.g. tcp://0.0.0.0:8786, "
                                                    "so workers on other machines can join")
    max_consecutive_failures: int = Field(10, ge=1)
    flush_seconds: float = Field(0.5, ge=0, description="how long finished trials may wait to be written")
    reuse_duplicates: Union[bool, Literal["auto"]] = Field(
        "auto", description="a candidate equal to a complete trial takes its stored value instead of being evaluated "
                            "again (not stored, not counted in budget.trials); auto: on where equal candidates can "
                            "occur (a space with an int, categorical, bool or mask parameter) and the objective is "
                            "deterministic (every built-in one). On, a resumed run reads every stored trial")

    @field_validator("devices")
    @classmethod
    def _devices(cls, v):
        if isinstance(v, list):
            if not v:
                raise ValueError("devices must not be an empty list")
            for d in v:
                if not re.fullmatch(r"cpu|cuda(:\d+)?|mps", str(d)):
                    raise ValueError(f"each device must be cpu, cuda:N or mps, got {d!r}")
        return v

    @field_validator("listen")
    @classmethod
    def _listen(cls, v):
        if v is not None and not re.fullmatch(r"(tcp://)?[\w.\-]*:\d{1,5}", v):
            raise ValueError(f"must look like tcp://0.0.0.0:8786, host:port or :port, got {v!r}")
        return v

    def local_cluster_keys(self) -> list[str]:
        """The keys set here that start a local cluster (refused beside ``scheduler``)."""
        return [k for k in LOCAL_CLUSTER_KEYS if getattr(self, k) != type(self).model_fields[k].default]

    @property
    def distributed(self) -> bool:
        """Whether candidates are evaluated on Dask workers."""
        return (self.workers is not None or self.devices is not None or self.trials_per_device > 1
                or self.scheduler is not None)


PRUNERS = {
    "median": "MedianPruner",
    "percentile": "PercentilePruner",
    "successive_halving": "SuccessiveHalvingPruner",
    "hyperband": "HyperbandPruner",
}


class PrunerConfig(BaseModel):
    """An Optuna pruner by name; other keys are its constructor arguments (same names)."""

    model_config = ConfigDict(extra="allow", frozen=True)
    name: Literal["median", "percentile", "successive_halving", "hyperband"]

    @model_validator(mode="after")
    def _build_once(self) -> "PrunerConfig":
        try:
            self.build()
        except TypeError as exc:
            raise ValueError(f"bad argument for optuna.pruners.{PRUNERS[self.name]}: {exc}") from None
        return self

    def build(self):
        import optuna

        return getattr(optuna.pruners, PRUNERS[self.name])(**(self.model_extra or {}))


def _rules(value: Any) -> list[Rule]:
    return parse_rules(value)


class StudyFile(_Strict):
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.\-]*$")
    description: str = ""
    storage: str = DEFAULT_STORAGE
    seed: int = Field(0, ge=0)
    objective_seed: Optional[int] = Field(None, ge=0, description="seed of the objective (data split, model "
                                          "initialisation); default: seed. optileuk compare fixes it across seeds")
    direction: Optional[Literal["minimize", "maximize"]] = None
    objectives: Optional[list[str]] = Field(None, min_length=1, description="values of the objective to optimize "
                                            "together (e.g. [error, head_params]): a multi-objective study")
    objective: dict[str, Any]
    search_space: Union[str, dict[str, Any]]
    optimizer: dict[str, Any]
    budget: Budget
    runner: RunnerConfig = RunnerConfig()
    pruner: Optional[PrunerConfig] = None
    selection: Annotated[list[Rule], BeforeValidator(_rules)] = Field(
        default_factory=lambda: [Rule(rule="best")],
        description="which trial is the best: best | one_se | race | anchored | ensemble:N (or a list: the first is "
                    "used, the others made ready for export --selection and assess --selection)")


@dataclass
class Study:
    """A validated study: its file, the typed pieces and the plug-ins they name."""

    path: Path
    file: StudyFile
    space: Any  # SearchSpace (not bound to the objective yet)
    optimizer_name: str
    optimizer: Any  # Registered
    optimizer_config: Any
    objective_type: str
    objective_cls: Any
    objective_config: Any

    @property
    def name(self) -> str:
        return self.file.name

    @property
    def objective_seed(self) -> int:
        """Seed of the objective's data split and model initialisation (``seed`` unless set apart)."""
        return self.file.seed if self.file.objective_seed is None else self.file.objective_seed

    def objective(self, config=None):
        """A fresh objective object for this study (optionally with a changed config)."""
        return self.objective_cls(config or self.objective_config, space=self.space, seed=self.objective_seed,
                                  objectives=self.file.objectives)

    @property
    def direction(self) -> str:
        """The direction of a single-objective study (of the first value of a multi-objective one)."""
        return self.directions[0]

    @property
    def directions(self) -> list[str]:
        if self.file.objectives:
            names = self.objective_cls.value_names()
            return [names[n] for n in self.file.objectives]
        return [self.file.direction or self.objective_cls.direction]

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    def raw(self) -> dict[str, Any]:
        """The study as plain data (stored with the study, used by ``export``)."""
        data = self.file.model_dump(mode="json")
        data["storage"] = redact(data["storage"])  # study attrs are served by dashboards: no password
        data["search_space"] = self.space.to_dict()
        data["objective"] = {"type": self.objective_type, **self.objective_config.model_dump(mode="json")}
        data["optimizer"] = {"name": self.optimizer_name, **self.optimizer_config.model_dump(mode="json")}
        return data


def load_study(path: str | Path, *, trials: int | None = None, seed: int | None = None,
               storage: str | None = None, scheduler: str | None = None) -> Study:
    """Read and validate a study file (and its search-space file); raise :class:`ConfigError`.

    The overrides mirror ``optileuk run --trials/--seed/--storage/--scheduler``.
    """
    path = Path(path)
    data = read_yaml(path, what="study file")
    if not isinstance(data, dict):
        raise ConfigError([Problem(str(path), "", "must be a YAML mapping (name, objective, search_space, optimizer, budget, ...)", data)])
    data = dict(data)
    if "optimizers" in data and "optimizer" not in data:
        raise ConfigError([Problem(str(path), "optimizers", "makes this a comparison file: run it with "
                                   f"optileuk compare {path}")])
    if trials is not None:
        data["budget"] = {**(data.get("budget") or {}), "trials": trials} if isinstance(data.get("budget", {}), dict) else data["budget"]
    if seed is not None:
        data["seed"] = seed
    if storage is not None:
        data["storage"] = storage
    if scheduler is not None:  # the cluster named on the command line replaces a local one
        runner = data.get("runner") or {}
        if isinstance(runner, dict):
            data["runner"] = {**{k: v for k, v in runner.items() if k not in LOCAL_CLUSTER_KEYS}, "scheduler": scheduler}
    return study_from_dict(data, path)


def study_from_dict(data: dict[str, Any], path: Path) -> Study:
    """Validate study data (a parsed file, or the copy stored with a study for its workers)."""
    src = str(path)
    problems: list[Problem] = []
    file, errs = validate(StudyFile, data, src)
    problems += _explain_extra(errs, StudyFile)
    if file is not None and file.runner.scheduler and file.runner.local_cluster_keys():
        problems.append(Problem(src, "runner.scheduler", "uses the workers of that cluster; "
                                f"{', '.join(file.runner.local_cluster_keys())} would start another one (remove them)",
                                file.runner.scheduler))

    # The plug-ins and the space are checked even when the top level has problems elsewhere.
    space = _space(data.get("search_space"), path, problems)

    opt_entry = opt_cfg = None
    spec = data.get("optimizer")
    opt_name, found = _plugin(OPTIMIZERS, spec, "optimizer", "name", src, problems)
    if found is not None:
        opt_entry, arg = found
        try:
            opt_cfg = opt_entry.make_config({k: v for k, v in spec.items() if k != "name"}, arg)
        except ValidationError as exc:
            problems += _explain_extra(problems_from(exc, src, ("optimizer",)), opt_entry.config_model(), "name")
        if file is not None and file.runner.mode == "async" and not opt_entry.cls.supports_async:
            problems.append(Problem(src, "runner.mode", "async needs an optimizer that makes one candidate at a time "
                                    f"({', '.join(_async_optimizers(OPTIMIZERS))}); '{opt_name}' evaluates whole "
                                    "generations (use mode: generational)", "async"))

    obj_cls = obj_cfg = None
    spec = data.get("objective")
    obj_type, found = _plugin(OBJECTIVES, spec, "objective", "type", src, problems)
    if found is not None:
        obj_cls = found[0]
        obj_cfg, errs = validate(obj_cls.Config, {k: v for k, v in spec.items() if k != "type"}, src, ("objective",))
        problems += _explain_extra(errs, obj_cls.Config, "type")
        missing = []
        if obj_cfg is not None:  # data paths are read from the study file's folder, as search-space files are
            obj_cfg = obj_cfg.anchored(path.parent)
            missing = obj_cfg.file_problems(src)
            problems += missing
        if obj_cfg is not None and space is not None and not missing:
            try:
                for msg in obj_cls(obj_cfg, space=space).space_problems(space):
                    problems.append(Problem(src, "search_space", msg))
            except ConfigError as exc:  # the objective's own checks, attributed to this file
                problems += [Problem(src, p.path, p.rule, p.value) for p in exc.problems]

    if file is not None and file.objectives and obj_cls is not None:
        problems += _objectives_problems(file, obj_cls, obj_type, opt_entry, opt_name, src)
    if file is not None and obj_cls is not None:
        problems += rule_problems(file.selection, obj_cls, obj_type, src, multi=len(file.objectives or []) > 1)

    if problems:
        raise ConfigError(problems)
    return Study(path, file, space, opt_name, opt_entry, opt_cfg, obj_type, obj_cls, obj_cfg)


def _space(ss: Any, path: Path, problems: list[Problem]) -> SearchSpace | None:
    """The study's ``search_space`` (a file beside the study file, or inline); its problems added to ``problems``."""
    src = str(path)
    try:
        if isinstance(ss, str):
            ss_path = (path.parent / ss) if not Path(ss).is_absolute() else Path(ss)
            if not ss_path.is_file():
                raise ConfigError([Problem(src, "search_space", f"must name an existing YAML file (looked for {ss_path})", ss)])
            return SearchSpace.from_file(ss_path)
        if isinstance(ss, dict):
            return SearchSpace.from_dict(ss, source=src, prefix=("search_space",))
    except ConfigError as exc:
        problems += exc.problems
    return None


def _objectives_problems(file: StudyFile, obj_cls, obj_type: str, opt_entry, opt_name: str, src: str) -> list[Problem]:
    """``objectives``: values the objective reports, once each; several need a multi-objective optimizer."""
    out = []
    names = obj_cls.value_names()
    for i, n in enumerate(file.objectives):
        if n not in names:
            out.append(Problem(src, f"objectives[{i}]", f"must be a value the {obj_type} objective reports "
                               f"({', '.join(names)})", n))
        elif n in file.objectives[:i]:
            out.append(Problem(src, f"objectives[{i}]", "is named twice", n))
    if len(file.objectives) > 1:
        if file.direction is not None:
            each = ", ".join(f"{n}: {names.get(n, '?')}" for n in file.objectives)
            out.append(Problem(src, "direction", f"is for single-objective studies; each of objectives has its own ({each})",
                               file.direction))
        if opt_entry is not None and not getattr(opt_entry.cls, "multi_objective", False):
            multi = [n for n in OPTIMIZERS.names() if (f := OPTIMIZERS.resolve(n)) is not None
                     and getattr(f[0].cls, "multi_objective", False)]
            out.append(Problem(src, "optimizer.name", f"optimizes one value; with {len(file.objectives)} objectives use "
                               f"a multi-objective optimizer ({', '.join(multi)})", opt_name))
        if file.pruner is not None:
            out.append(Problem(src, "pruner", "Optuna prunes single-objective studies only; remove it or use one "
                               "objective", file.pruner.name))
    return out


def _async_optimizers(registry) -> list[str]:
    names = []
    for name in registry.names():
        found = registry.resolve(name)  # None for names that need an argument (mealpy:<Module>.<Class>)
        if found is not None and getattr(found[0].cls, "supports_async", False):
            names.append(name)
    return names


def _plugin(registry, spec: Any, section: str, key: str, src: str, problems: list[Problem]):
    """``(name, (registered, argument))`` for ``spec[key]``; a problem (and ``None``) if unknown."""
    if not isinstance(spec, dict):
        return None, None
    name = spec.get(key)
    found = registry.resolve(name) if isinstance(name, str) else None
    if name is None:
        problems.append(Problem(src, f"{section}.{key}", "is required"))
    elif found is None:
        problems.append(Problem(src, f"{section}.{key}", f"must be one of {', '.join(registry.display_names())}", name))
    return name, found


def _explain_extra(problems: list[Problem], model: type[BaseModel], selector: str | None = None,
                   prefix_len: int | None = None) -> list[Problem]:
    """An unknown key names the valid keys of *its own* section (``budget.trails``: the budget's)."""
    out = []
    for p in problems:
        if p.rule == "is not a known key":
            parts = p.path.split(".")
            skip = prefix_len if prefix_len is not None else (1 if selector else 0)
            section, inner = _section(model, parts[skip:-1])
            keys = ([selector] if selector and not inner else []) + list(section.model_fields)
            p = Problem(p.file, p.path, f"is not a known key (valid keys: {', '.join(keys)})")
        out.append(p)
    return out


def _section(model: type[BaseModel], parts: list[str]) -> tuple[type[BaseModel], bool]:
    """The model of the section at ``parts`` below ``model`` (as far as the path leads through models)."""
    import typing

    inner = False
    for part in parts:
        field = model.model_fields.get(part)
        if field is None:
            break
        candidates = [field.annotation, *typing.get_args(field.annotation)]
        sub = next((c for c in candidates if isinstance(c, type) and issubclass(c, BaseModel)), None)
        if sub is None:
            break
        model, inner = sub, True
    return model, inner


__all__ = ["Budget", "PrunerConfig", "RunnerConfig", "Study", "StudyFile", "load_study", "study_from_dict", "join"]
