"""Turn study files (or one comparison file) into the runs of a fair comparison.

A comparison runs every optimizer on the same objective, data split, search space and budget,
once per seed. Each run is its own Optuna study named ``<base>.<optimizer>.s<seed>`` in one
storage, so optuna-dashboard shows them side by side and ``optileuk report`` finds them.

The seeds vary the optimizers only: the objective (data split, model initialisation) keeps the
seed of the file (``objective_seed``), so that run ``s3`` of every optimizer scores candidates on
exactly the same data and the runs of one seed can be compared pairwise.

A comparison file is a study file with ``optimizers:`` (a list) in place of ``optimizer:`` and an
optional ``seeds:``; each entry may carry a ``label`` (default: its name)::

    name: segmentation
    objective: {type: segmentation, score: mean, target: nucleus}
    search_space: ../search_spaces/segmentation.yaml
    optimizers:
      - {name: pso, population: 12}
      - {name: tpe, population: 4, n_startup_trials: 12}
    budget: {trials: 72}
    seeds: 5

``references:`` (comparison files, single-objective) lists fixed candidates scored once with the
same objective and split, e.g. an untuned baseline; each is the study ``<name>.<label>.ref`` and a
reference line in the ranking and the report::

    references:
      - {label: dense-head, params: {rank1: 0, rank2: 0}, note: dense head, default training}
"""

from __future__ import annotations

import json
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from optileuk.config import Study, load_study, study_from_dict
from optileuk.errors import ConfigError, Problem
from optileuk.validation import read_yaml

NAME = re.compile(r"^(?P<base>.+)\.(?P<label>[A-Za-z0-9_\-]+)\.s(?P<seed>\d+)$")
REF_NAME = re.compile(r"^(?P<base>.+)\.(?P<label>[A-Za-z0-9_\-]+)\.ref$")
_LABEL = re.compile(r"^[A-Za-z0-9_\-]+$")
DEFAULT_SEEDS = 5


def run_name(base: str, label: str, seed: int) -> str:
    return f"{base}.{label}.s{seed}"


def reference_name(base: str, label: str) -> str:
    return f"{base}.{label}.ref"


def default_label(optimizer: str) -> str:
    """``pso`` -> ``pso``; ``mealpy:GA.BaseGA`` -> ``mealpy-GA-BaseGA`` (no dots in run names)."""
    return re.sub(r"[^A-Za-z0-9_\-]+", "-", optimizer).strip("-") or "optimizer"


@dataclass(frozen=True)
class Run:
    """One optimizer on one seed: the study data to validate and run (picklable for workers)."""

    base: str
    label: str
    seed: int
    data: dict[str, Any]
    path: Path
    rebuild_state: bool = False  # optileuk compare --rebuild-state

    @property
    def name(self) -> str:
        return run_name(self.base, self.label, self.seed)

    def study(self) -> Study:
        return study_from_dict(self.data, self.path)


@dataclass(frozen=True)
class Reference:
    """A fixed candidate scored once with the comparison's objective (a baseline to beat)."""

    label: str
    params: dict[str, Any]
    note: str = ""
    study: str | None = None  # optileuk assess: the study whose objective it takes (default: the first)


@dataclass
class Plan:
    base: str
    storage: str
    labels: list[str]
    seeds: list[int]
    runs: list[Run] = field(default_factory=list)
    references: list[Reference] = field(default_factory=list)

    def first(self) -> Study:
        return self.runs[0].study()


def plan_comparison(paths: list[Path], *, seeds: int | None = None, name: str | None = None,
                    storage: str | None = None, trials: int | None = None) -> Plan:
    """Validate the files and list the runs; raise :class:`ConfigError` with every problem at once."""
    if not paths:
        raise ConfigError([Problem("", "STUDY", "give one comparison file or two or more study files")])
    if seeds is not None and seeds < 1:
        raise ConfigError([Problem("", "--seeds", "must be an integer >= 1", seeds)])
    if len(paths) == 1:
        data = read_yaml(paths[0], what="comparison file")
        if not (isinstance(data, dict) and "optimizers" in data):
            raise ConfigError([Problem(str(paths[0]), "optimizers", "is required in a comparison file (a list of "
                                       "optimizers); or give two or more study files", )])
        entries, n_seeds, base = _from_comparison_file(paths[0], data, seeds, name)
        references = parse_references(paths[0], data.get("references"), {e[0] for e in entries})
    else:
        entries, n_seeds, base = _from_study_files(paths, seeds, name)
        references = []

    problems: list[Problem] = []
    studies: list[tuple[str, Study, dict, Path]] = []
    for label, data, path, where in entries:
        if trials is not None:
            data["budget"] = {**(data.get("budget") or {}), "trials": trials}
        if storage is not None:
            data["storage"] = storage
        data["name"] = run_name(base, label, int(data.get("seed") or 0))
        try:
            studies.append((label, study_from_dict(data, path), data, path))
        except ConfigError as exc:
            problems += [Problem(p.file, where(p.path), p.rule, p.value) for p in exc.problems]
    if problems:
        raise ConfigError(problems)
    problems += _fairness(studies)
    if references:
        problems += _reference_problems(paths[0], references, studies[0][1])
    if problems:
        raise ConfigError(problems)

    first = studies[0][1]
    objective_seed = first.objective_seed
    seed_list = [first.file.seed + i for i in range(n_seeds)]
    plan = Plan(base, first.file.storage, [s[0] for s in studies], seed_list, references=references)
    for seed in seed_list:
        for label, _study, data, path in studies:
            run = {**data, "name": run_name(base, label, seed), "seed": seed, "objective_seed": objective_seed}
            plan.runs.append(Run(base, label, seed, run, path))
    return plan


def _from_comparison_file(path: Path, data: dict, seeds: int | None, name: str | None):
    src = str(path)
    problems: list[Problem] = []
    specs = data.get("optimizers")
    n_seeds = data.get("seeds", DEFAULT_SEEDS)
    if not isinstance(n_seeds, int) or isinstance(n_seeds, bool) or n_seeds < 1:
        problems.append(Problem(src, "seeds", "must be an integer >= 1", n_seeds))
    if "optimizer" in data:
        problems.append(Problem(src, "optimizer", "is not a key of a comparison file (list them under optimizers:)"))
    if not isinstance(specs, list) or not specs:
        problems.append(Problem(src, "optimizers", "must be a non-empty list of optimizers ({name: ..., ...})", specs))
        specs = []
    base = name or data.get("name")
    if not isinstance(base, str) or not base:
        problems.append(Problem(src, "name", "is required (the base of the run names <name>.<optimizer>.s<seed>)", base))
    common = {k: v for k, v in data.items() if k not in ("optimizers", "seeds", "optimizer", "references")}
    entries, labels = [], set()
    for i, spec in enumerate(specs):
        if not isinstance(spec, dict):
            problems.append(Problem(src, f"optimizers[{i}]", "must be a mapping with a name", spec))
            continue
        spec = dict(spec)
        label = spec.pop("label", None) or default_label(str(spec.get("name", "")))
        if not isinstance(label, str) or not _LABEL.match(label):
            problems.append(Problem(src, f"optimizers[{i}].label", "must contain only letters, digits, '-' and '_'", label))
        elif label in labels:
            problems.append(Problem(src, f"optimizers[{i}].label",
                                    "must be unique in the comparison (add label: to tell the entries apart)", label))
        labels.add(label)

        def where(key: str, i=i) -> str:
            return f"optimizers[{i}]" + key[len("optimizer"):] if key.startswith("optimizer") else key

        entries.append((label, {**common, "optimizer": spec}, path, where))
    if problems:
        raise ConfigError(problems)
    return entries, seeds or n_seeds, base


def parse_references(path: Path, specs: Any, labels: set[str], *, study: bool = False) -> list[Reference]:
    """The ``references:`` list of a comparison file (shape only; the parameters are checked against
    the objective by :func:`_reference_problems`). ``study``: a reference may name the study whose
    objective it takes (``optileuk assess``)."""
    if specs is None:
        return []
    src = str(path)
    keys = ("label", "params", "note", "study") if study else ("label", "params", "note")
    if not isinstance(specs, list):
        raise ConfigError([Problem(src, "references", f"must be a list of {{{', '.join(keys)}}}", specs)])
    problems, out, seen = [], [], set()
    for i, spec in enumerate(specs):
        where = f"references[{i}]"
        if not isinstance(spec, dict):
            problems.append(Problem(src, where, "must be a mapping with label and params", spec))
            continue
        extra = sorted(set(spec) - set(keys))
        if extra:
            problems.append(Problem(src, f"{where}.{extra[0]}", f"is not a key of a reference (valid keys: "
                                    f"{', '.join(keys)})"))
        label, params, note = spec.get("label"), spec.get("params"), spec.get("note", "")
        if not isinstance(label, str) or not _LABEL.match(label):
            problems.append(Problem(src, f"{where}.label", "is required and must contain only letters, digits, "
                                    "'-' and '_'", label))
        elif label in seen or label in labels:
            problems.append(Problem(src, f"{where}.label", "must differ from every other reference's and "
                                    "optimizer's label", label))
        seen.add(label)
        if not isinstance(params, dict) or not all(isinstance(k, str) for k in params):
            problems.append(Problem(src, f"{where}.params", "must be a mapping of parameter names to values "
                                    "(the rest take the objective's defaults)", params))
        elif not all(v is None or isinstance(v, (str, int, float, bool)) for v in params.values()):
            problems.append(Problem(src, f"{where}.params", "values must be numbers, strings or booleans", params))
        if not isinstance(note, str):
            problems.append(Problem(src, f"{where}.note", "must be a string", note))
        if not problems:
            out.append(Reference(label, dict(params), note, spec.get("study")))
    if problems:
        raise ConfigError(problems)
    return out


def _reference_problems(path: Path, references: list[Reference], study: Study) -> list[Problem]:
    """Each reference's parameters must be parameters of the objective; one value each."""
    from optileuk.space import SearchSpace

    out = []
    if len(study.directions) > 1:
        return [Problem(str(path), "references", "are for single-objective comparisons (a multi-objective "
                        "comparison is ranked by hypervolume)")]
    for i, ref in enumerate(references):
        if not ref.params:  # the objective's defaults
            continue
        space = SearchSpace.from_dict({"parameters": {k: _point(v) for k, v in ref.params.items()}})
        try:
            messages = study.objective().space_problems(space)
        except ConfigError as exc:
            messages = [p.rule for p in exc.problems]
        out += [Problem(str(path), f"references[{i}].params", m, ref.params) for m in messages]
    return out


def _point(value: Any) -> dict[str, Any]:
    """A one-point parameter of the value's type (what the objective's own space check reads)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return {"type": "int", "low": value, "high": value}
    if isinstance(value, float):
        return {"type": "float", "low": value, "high": value + max(abs(value), 1.0) * 1e-9}
    return {"type": "categorical", "choices": [value]}


def _from_study_files(paths: list[Path], seeds: int | None, name: str | None):
    problems: list[Problem] = []
    loaded: list[tuple[Path, Study]] = []
    for p in paths:
        try:
            loaded.append((p, load_study(p)))
        except ConfigError as exc:
            problems += exc.problems
    if problems:
        raise ConfigError(problems)
    base = name or os.path.commonprefix([s.name for _, s in loaded]).rstrip("-_.")
    if not base:
        raise ConfigError([Problem("", "--name", "is required: the study names share no prefix to name the comparison by",
                                   [s.name for _, s in loaded])])
    entries, counts = [], {}
    for p, st in loaded:
        label = default_label(st.optimizer_name)
        counts[label] = counts.get(label, 0) + 1
        if counts[label] > 1:
            label = f"{label}-{counts[label]}"
        data = read_yaml(p, what="study file")
        entries.append((label, dict(data), p, lambda key: key))
    return entries, seeds or DEFAULT_SEEDS, base


def _fairness(studies: list[tuple[str, Study, dict, Path]]) -> list[Problem]:
    """Same objective, data split, search space, budget and direction for every optimizer."""
    def facts(st: Study) -> dict[str, Any]:
        raw = st.raw()
        return {"objective": raw["objective"], "search_space": raw["search_space"], "budget": raw["budget"],
                "direction": st.direction, "objective_seed": st.objective_seed, "pruner": raw["pruner"]}

    ref_label, ref, _, ref_path = studies[0]
    want = facts(ref)
    out = []
    for label, st, _, path in studies[1:]:
        got = facts(st)
        for key, value in got.items():
            if json.dumps(value, sort_keys=True, default=str) != json.dumps(want[key], sort_keys=True, default=str):
                shown = "seed" if key == "objective_seed" else key
                out.append(Problem(str(path), shown, f"must be the same as in {ref_path} for a fair comparison "
                                   f"(same objective, data split, search space and budget)", value))
    return out
