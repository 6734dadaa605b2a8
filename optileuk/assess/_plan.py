"""What ``optileuk assess`` will run, checked before anything is written.

Every approach (a study file, tuned by its own search; or a reference: fixed params of one study's
objective) is assessed on the same K outer parts of the same data: for part ``i`` its objective's
split becomes ``test_size: 1/K, test_fold: i`` (so the part is exactly its held-out test split),
its search runs on the other parts as the study ``<name>.outer<i>of<K>``, the best config is
trained on those parts and the part is scored once.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from optileuk.config import Study, load_study, study_from_dict
from optileuk.errors import ConfigError, DataError, Problem
from optileuk.validation import read_yaml

RUNNER_INLINE_KEYS = ("mode", "max_consecutive_failures", "flush_seconds", "reuse_duplicates")
PART_ATTR = "optileuk.assess.part"  # user attr of every study assess makes (the report leaves them out of comparisons)
RESULT_ATTR = "optileuk.assess.result"  # a part's held-out result, kept so that a re-run does not train again
SUMMARY_ATTR = "optileuk.assess"  # the assessment's summary, on the study <base>.assess (the report's section)


@dataclass(frozen=True)
class Approach:
    """One way to get a model for the data: a study's search, or fixed params (a reference)."""

    label: str
    path: Path
    data: dict[str, Any]  # the study file's content (overrides applied)
    params: dict[str, Any] | None = None  # None: tuned by the study's search
    note: str = ""
    rule: Any = None  # the selection rule (optileuk.selection.Rule) that picks from the search; None: the study's
    rules: tuple = ()  # every rule assessed on this study's search (the inner study makes them all ready)
    search: str | None = None  # the study whose search it shares with other rules (default: label)
    defaults: bool = False  # a reference at the objective's defaults (--untuned)

    @property
    def tuned(self) -> bool:
        return self.params is None


@dataclass(frozen=True)
class Job:
    """One approach on one outer part (``part`` -1: on all the data, for ``--external``)."""

    approach: Approach
    part: int
    k: int
    seed: int
    storage: str
    base: str
    pick: str | None = None
    inline: bool = False  # on a Dask worker: the inner study evaluates in the worker's process
    external: str | None = None  # part -1: the data set the model trained on all the data is scored on

    @property
    def name(self) -> str:
        where = "all" if self.part < 0 else f"outer{self.part}of{self.k}"
        if self.approach.tuned:
            return f"{self.approach.search or self.approach.label}.{where}"
        return f"{self.base}.{self.approach.label}.{where}.ref"

    def study_data(self) -> dict[str, Any]:
        """The inner study: the approach's study with the outer split, the common seed and storage."""
        data = dict(self.approach.data)
        objective = dict(data["objective"])
        split = dict(objective.get("split") or {})
        split.update({"test_size": 1 / self.k, "test_fold": self.part} if self.part >= 0 else
                     {"test_size": 0, "test_fold": 0})
        objective["split"] = split
        data.update(name=self.name, objective=objective, objective_seed=self.seed, storage=self.storage)
        if self.approach.rules:  # the rules compared on this search: all made ready by its run
            data["selection"] = [r.model_dump() for r in self.approach.rules]
        if self.inline:
            data["runner"] = {k: v for k, v in (data.get("runner") or {}).items() if k in RUNNER_INLINE_KEYS}
        return data

    def study(self) -> Study:
        return study_from_dict(self.study_data(), self.approach.path)


@dataclass
class Plan:
    approaches: list[Approach]
    k: int
    seed: int
    storage: str
    base: str
    task: str  # classification | segmentation
    ds: Any  # the data (optileuk.data.Dataset)
    parts: list[np.ndarray]
    pick: str | None = None
    external: Any = None  # an external Dataset for --external
    external_spec: str | None = None
    inline: bool = False
    notes: list[str] = field(default_factory=list)

    def jobs(self) -> list[Job]:
        out = [Job(a, i, self.k, self.seed, self.storage, self.base, self.pick, self.inline)
               for i in range(self.k) for a in self.approaches]
        if self.external is not None:
            out += [Job(a, -1, self.k, self.seed, self.storage, self.base, self.pick, self.inline, self.external_spec)
                    for a in self.approaches]
        return out


def _task(study: Study) -> str | None:
    model = getattr(study.objective_cls, "Model", None)
    if model is None:
        return None
    return "segmentation" if model.task == "segmentation" else "classification"


def _load(paths: list[Path], storage: str | None, pick: str | None) -> tuple[list[Study], list[Problem]]:
    studies, problems = [], []
    for p in paths:
        try:
            st = load_study(p, storage=storage)
        except ConfigError as exc:
            problems += exc.problems
            continue
        if _task(st) is None:
            problems.append(Problem(str(p), "objective.type", "has no final model to assess (assess works for dknn, "
                                    "unet_plr, segmentation, handcrafted, feature_selection and pipeline)",
                                    st.objective_type))
        elif st.multi and pick is None:
            problems.append(Problem(str(p), "objectives", "are several values: give --pick (as for optileuk export: "
                                    "'knee' or conditions such as 'error<=0.1') to choose each part's config",
                                    st.file.objectives))
        studies.append(st)
    names = [s.name for s in studies]
    for st in studies:
        if names.count(st.name) > 1:
            problems.append(Problem(str(st.path), "name", "must differ between the assessed studies", st.name))
            break
    return studies, problems


def _same_data(studies: list[Study]) -> list[Problem]:
    """Every study on the same data with the same task: the outer parts must be the same items."""
    first = studies[0]

    def key(st: Study) -> str:
        cfg = st.objective_config
        grouped = getattr(getattr(cfg, "split", None), "grouped", True)
        return json.dumps([cfg.dataset.model_dump(mode="json"), grouped], sort_keys=True)

    out = []
    for st in studies[1:]:
        if _task(st) != _task(first):
            out.append(Problem(str(st.path), "objective.type", f"is a {_task(st)} objective; {first.path} is a "
                               f"{_task(first)} one: assess compares approaches to one task", st.objective_type))
        elif key(st) != key(first):
            out.append(Problem(str(st.path), "objective.dataset", f"must be the data of {first.path} (assess scores "
                               "every approach on the same outer parts of the same data)",
                               st.objective_config.dataset.model_dump(mode="json")))
    return out


def read_references(path: Path, studies: list[Study]) -> list[Approach]:
    """``references:`` of a YAML file (a comparison file works): label, params, note, and ``study`` (which
    assessed study's objective it takes; default: the first)."""
    from optileuk.compare import parse_references

    data = read_yaml(path, what="references file")
    specs = data.get("references") if isinstance(data, dict) else None
    if not specs:
        raise ConfigError([Problem(str(path), "references", "must be a non-empty list of {label, params, note, study}",
                                   specs)])
    by_name = {st.name: st for st in studies}
    refs = parse_references(path, specs, set(), study=True)
    unknown = [(i, r.study) for i, r in enumerate(refs) if r.study is not None and r.study not in by_name]
    if unknown:
        raise ConfigError([Problem(str(path), f"references[{i}].study", f"must name one of the assessed studies "
                                   f"({', '.join(by_name)})", name) for i, name in unknown])
    return [Approach(r.label, by_name[r.study or studies[0].name].path, _raw(by_name[r.study or studies[0].name].path),
                     dict(r.params), r.note) for r in refs]


def _raw(path: Path) -> dict[str, Any]:
    return dict(read_yaml(path, what="study file"))


def untuned(studies: list[Study]) -> list[Approach]:
    """Each study's objective at its defaults (no search): does tuning help at all?"""
    return [Approach(f"{st.name}-untuned", st.path, _raw(st.path), {}, "the objective's defaults, no search",
                     search=st.name, defaults=True) for st in studies]


def by_rule(st: Study, data: dict[str, Any], rules: list) -> list[Approach]:
    """One approach per selection rule on the study's one search (``<name>/<rule>``), or the study with
    its own rules when none is given."""
    if not rules:
        return [Approach(st.name, st.path, data, rules=tuple(st.file.selection))]
    return [Approach(f"{st.name}/{r.label}", st.path, data, rule=r, rules=tuple(rules), search=st.name,
                     note=f"selection: {r.label}") for r in rules]


def plan_assessment(paths: list[Path], *, k: int = 5, seed: int | None = None, storage: str | None = None,
                    name: str | None = None, pick: str | None = None, references: Path | None = None,
                    with_untuned: bool = False, external: str | None = None, inline: bool = False,
                    selection: list | None = None) -> Plan:
    """Validate everything (files, data, outer parts, external classes); raise one error with every problem.
    ``selection``: rules (:class:`optileuk.selection.Rule`) compared as approaches on each study's search."""
    import os

    from optileuk.data import load_dataset
    from optileuk.data import outer_parts

    if not paths:
        raise ConfigError([Problem("", "STUDY", "give one or more study files to assess")])
    studies, problems = _load(paths, storage, pick)
    if problems:
        raise ConfigError(problems)
    problems += _same_data(studies)
    if problems:
        raise ConfigError(problems)
    problems += _rule_problems(studies, selection or [])
    if problems:
        raise ConfigError(problems)
    approaches = [a for st in studies
                  for a in by_rule(st, {**_raw(st.path), **({"storage": storage} if storage else {})}, selection or [])]
    if references is not None:
        approaches += read_references(references, studies)
    if with_untuned:
        approaches += untuned(studies)
    labels = [a.label for a in approaches]
    if len(set(labels)) < len(labels):
        raise ConfigError([Problem(str(references or ""), "references", "a reference's label repeats a study name or "
                                   "another label", labels)])
    first = studies[0]
    seed = first.objective_seed if seed is None else seed
    task = _task(first)
    ds = load_dataset(first.objective_config.dataset)
    grouped = getattr(getattr(first.objective_config, "split", None), "grouped", True)
    parts = outer_parts(ds, k, seed=seed, classify=task == "classification", grouped=grouped)
    base = name or os.path.commonprefix([st.name for st in studies]).rstrip("-_.") or "assess"
    plan = Plan(approaches, k, seed, storage or first.file.storage, base, task, ds, parts, pick, inline=inline)
    if external is not None:
        plan.external, plan.external_spec = load_external(external, ds.classes, task), external
    return plan


def _rule_problems(studies: list[Study], rules: list) -> list[Problem]:
    """``--selection`` rules each study's objective can serve (a race needs folds to draw again, an
    ensemble out-of-fold predictions); a multi-objective study picks with --pick."""
    from optileuk.config import study_from_dict

    out = []
    for st in studies:
        if not rules:
            continue
        try:
            study_from_dict({**_raw(st.path), "selection": [r.model_dump() for r in rules]}, st.path)
        except ConfigError as exc:
            out += [Problem(str(st.path), "--selection", p.rule, p.value) for p in exc.problems
                    if p.path.startswith("selection")]
    return out


def load_external(spec: str, classes: list[str], task: str):
    """The external data set (a folder of class folders or image/mask pairs, or a YAML dataset spec);
    classes matched by name, a class the models never saw refused with its name."""
    if not Path(spec).expanduser().exists():
        raise DataError(f"--external {spec}: no such folder or dataset spec (YAML)")
    ext, _ = load_dataset_arg(spec)
    if task == "classification":
        unknown = [c for c, n in ext.counts().items() if n and c not in classes]
        if unknown:
            raise ConfigError([Problem("", "--external", f"holds classes the models never saw: {', '.join(unknown)} "
                                       f"(they know {', '.join(classes)})", spec)])
    elif ext.masks is None:
        raise DataError(f"--external {spec}: a segmenter is scored against masks; this data set has none")
    return ext


def load_dataset_arg(spec: str, group_pattern: str | None = None):
    """A data set named on the command line: a folder (class folders, or images/ + masks/ + labels.csv),
    a YAML dataset spec or a study file. Returns (dataset, whether it has classes to stratify)."""
    from optileuk.data import FoldersData, PairsData, load_dataset

    path = Path(spec).expanduser()
    if path.is_file() and path.suffix.lower() in (".yaml", ".yml"):
        from optileuk.predict import dataset_spec

        cfg = dataset_spec(path)
    elif path.is_dir():
        cfg = PairsData(type="pairs", path=str(path)) if (path / "images").is_dir() else \
            FoldersData(type="folders", path=str(path), group_pattern=group_pattern)
    else:
        raise DataError(f"{spec}: no such folder, dataset spec or study file")
    ds = load_dataset(cfg)
    return ds, len(ds.classes) > 1
