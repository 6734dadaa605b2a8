"""Exporting a study's best configuration (``optileuk export``, ``assess``): the best trial -- or
the picked point of a multi-objective front -- merged with the objective config, as plain data."""

from __future__ import annotations

import re
from typing import Any

import numpy as np
import optuna

from optileuk.errors import StorageError
from optileuk.registry import OBJECTIVES
from optileuk.space import SearchSpace
from optileuk.storage import (ANCHOR_ATTR, DEFAULTS_ATTR, MASKS_ATTR, STUDY_ATTR, best_trials, open_existing,
                              pareto_front, redact, study_names)


def value_meaning(raw: dict | None) -> tuple[str, tuple[str, ...]]:
    """(what a study's value is, the metrics its objective records) from the study's stored file."""
    spec = dict((raw or {}).get("objective") or {})
    found = OBJECTIVES.resolve(spec.pop("type", None)) if spec.get("type") else None
    if found is None or not hasattr(found[0], "value_meaning"):
        return "", ()
    cls = found[0]
    try:
        config = cls.Config.model_validate(spec)
    except Exception:  # a config an older optileuk stored: the class's default wording
        config = None
    return cls.value_meaning(config), tuple(getattr(cls, "METRICS", ()))


def _plain(value: Any) -> Any:
    if isinstance(value, np.ndarray):
        return [int(i) for i in np.flatnonzero(value)]
    if isinstance(value, np.generic):
        return value.item()
    return value


def pick_from_front(front: list, names: list[str], directions: list[str], pick: str, study: str) -> list:
    """The front's trials, the picked one first, then by distance to the ideal point.

    ``pick``: ``knee`` -- the point closest to the ideal point once each objective is scaled to
    [0, 1] over the front; or conditions such as ``error<=0.05`` (``<=``, ``<``, ``>=``, ``>``;
    several joined by ``,``): the knee of the points that meet them all.
    """
    if not front:
        return []
    vals = np.array([t.values for t in front], dtype=float)
    keep = np.ones(len(front), dtype=bool)
    if pick.strip() != "knee":
        for cond in pick.split(","):
            m = re.fullmatch(r"\s*([A-Za-z_][\w ]*?)\s*(<=|>=|<|>)\s*([-+0-9.eE]+)\s*", cond)
            if m is None or m[1] not in names:
                raise StorageError(f"--pick must be 'knee' or conditions like '{names[0]}<=0.05' on the objectives "
                                   f"({', '.join(names)}), got {cond.strip()!r}")
            col, limit = vals[:, names.index(m[1])], float(m[3])
            keep &= {"<=": col <= limit, "<": col < limit, ">=": col >= limit, ">": col > limit}[m[2]]
        if not keep.any():
            ranges = ", ".join(f"{n} {vals[:, i].min():.4g} to {vals[:, i].max():.4g}" for i, n in enumerate(names))
            raise StorageError(f"study '{study}': no point of its Pareto front ({len(front)} trials) meets {pick!r} "
                               f"(on the front: {ranges})")
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    v = vals * sign
    lo, hi = v.min(0), v.max(0)
    dist = np.linalg.norm((v - lo) / np.where(hi > lo, hi - lo, 1.0), axis=1)
    order = sorted(range(len(front)), key=lambda i: (not keep[i], dist[i], front[i].number))
    return [front[i] for i in order if keep[i]]


def export_config(name: str, url: str, top: int = 1, pick: str | None = None,
                  selection: str | None = None) -> dict[str, Any]:
    """The chosen trial of study ``name`` merged with the objective config, as plain data: the trial its
    ``selection`` rule chooses (default: the study's own rule; :mod:`optileuk.selection`), an ensemble's
    members with their weights; for a multi-objective study, the point of its Pareto front that
    ``pick`` chooses (default: the knee). With ``top`` the next best trials (or points of the front)."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        raise StorageError(f"storage: no study named '{name}' in {redact(url)} (studies: {', '.join(names) or 'none'})") from None
    raw = study.user_attrs.get(STUDY_ATTR)
    names, ranked = _ranked(storage, study, raw, name, top, pick)
    space = _space_of(study, raw, name)
    choice = None
    if names is None:
        choice = choose(storage, study, raw, name, space, selection)
        if choice.trial.number != ranked[0].number:
            ranked = [choice.trial] + [t for t in ranked if t.number != choice.trial.number][:max(top - 1, 0)]
    out: dict[str, Any] = {"study": name, "storage": redact(url)}
    if names is None:
        out["direction"] = study.direction.name.lower()
    else:
        out["objectives"] = names
        out["pick"] = pick or "knee"
    if raw:
        out["objective"] = raw["objective"]
        out["seed"] = raw["seed"] if raw.get("objective_seed") is None else raw["objective_seed"]  # data split + training
        out["optimizer"] = raw["optimizer"]
    best = _entry(ranked[0], space, names)
    out["trial"] = best["trial"]
    meaning, metrics = value_meaning(raw)
    if names is None:
        out["value"] = best["value"]
        if meaning:
            out["value_is"] = meaning
    else:
        out["values"] = best["values"]
    shown = {k: best["attrs"][k] for k in (*metrics, "value_se", "n_folds", "split", "split_sizes") if k in best["attrs"]}
    if shown:
        out["metrics"] = shown
    out["params"] = best["params"]
    if choice is not None:
        out["selection"] = {"rule": choice.rule, "reason": choice.reason}
        if choice.trial.user_attrs.get(ANCHOR_ATTR):
            out["selection"]["defaults"] = True
        if "oof_balanced_accuracy" in choice.facts:
            out["selection"]["oof_balanced_accuracy"] = choice.facts["oof_balanced_accuracy"]
        if choice.ensemble:
            out["ensemble"] = [{"trial": t.number, "weight": w, "value": t.value, "params": _entry(t, space, None)["params"]}
                               for t, w in zip(choice.trials, choice.weights)]
    if top > 1:
        out["top"] = [_entry(t, space, names) for t in ranked]
    return out


def selection_facts(storage, name: str) -> dict[str, Any] | None:
    """What the report says of a single-objective study's choice: the rule, the trial it chose and why,
    and how far the best can be trusted (:meth:`optileuk.selection.Chooser.trust`); ``None`` when the
    rule cannot choose (e.g. a race not run yet)."""
    from optileuk.selection import Chooser

    study = optuna.load_study(study_name=name, storage=storage)
    if len(study.directions) > 1:
        return None
    raw = study.user_attrs.get(STUDY_ATTR)
    try:
        space = _space_of(study, raw, name)
        choice = choose(storage, study, raw, name, space, None)
    except (StorageError, ValueError):
        return None
    chooser = Chooser(storage, study._study_id, name, maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
                      space=space, defaults=study.user_attrs.get(DEFAULTS_ATTR))
    return {"rule": choice.rule, "reason": choice.reason, "trial": choice.trial.number,
            "members": [[t.number, w] for t, w in zip(choice.trials, choice.weights)], "trust": chooser.trust()}


def choose(storage, study, raw: dict | None, name: str, space, selection: str | None):
    """The :class:`~optileuk.selection.Choice` of a single-objective study: by ``selection`` (a rule's
    text, e.g. ``one_se``), else the study's own first rule (``best`` for studies stored before rules)."""
    from optileuk.errors import ConfigError
    from optileuk.selection import Chooser, Rule, parse_rules

    stored = (raw or {}).get("selection") or ["best"]
    try:
        rule = parse_rules(selection)[0] if selection is not None else Rule.model_validate(stored[0])
    except ValueError as exc:
        raise ConfigError(f"--selection {exc}") from None
    chooser = Chooser(storage, study._study_id, name, maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE,
                      space=space, defaults=study.user_attrs.get(DEFAULTS_ATTR))
    return chooser.choose(rule)


def _ranked(storage, study, raw: dict | None, name: str, top: int, pick: str | None) -> tuple[list[str] | None, list]:
    """(the objectives' names for a multi-objective study, else ``None``; the trials to export, best first)."""
    names = None
    if len(study.directions) > 1:
        names = (raw or {}).get("objectives") or [f"objective {i}" for i in range(len(study.directions))]
        dirs = ["minimize" if d == optuna.study.StudyDirection.MINIMIZE else "maximize" for d in study.directions]
        ranked = pick_from_front(pareto_front(storage, study._study_id, dirs), names, dirs, pick or "knee", name)[:top]
    else:
        if pick is not None:
            raise StorageError(f"--pick chooses a point of a multi-objective study's front; study '{name}' has one "
                               "objective (its best trial is exported)")
        ranked = best_trials(storage, study._study_id, top,
                             maximize=study.direction == optuna.study.StudyDirection.MAXIMIZE)
    if not ranked:
        raise StorageError(f"storage: study '{name}' has no complete trial to export")
    return names, ranked


def _space_of(study, raw: dict | None, name: str) -> SearchSpace | None:
    """The study's search space as stored, its ``length: auto`` masks bound as they were run."""
    space = SearchSpace.from_dict(raw["search_space"]) if raw else None
    if space is not None and any(getattr(p, "length", None) == "auto" for p in space.params.values()):
        lengths = study.user_attrs.get(MASKS_ATTR)
        if lengths is None:
            raise StorageError(f"storage: study '{name}' has a length: auto mask whose length was not recorded (a "
                               "study run before optileuk recorded it); run it again with the same command to record it")
        space = space.bind(lengths)
    return space


def _entry(t, space: SearchSpace | None, names: list[str] | None) -> dict[str, Any]:
    """One exported trial: its number, value(s), params as configs take them (the defaults' trial: the
    defaults it evaluated), and its other attrs."""
    if t.user_attrs.get(ANCHOR_ATTR):
        params = dict(t.user_attrs.get("defaults") or {})
    else:
        params = space.from_record(t.params, t.user_attrs) if space else dict(t.params)
    value = {"values": dict(zip(names, t.values))} if names is not None else {"value": t.value}
    return {"trial": t.number, **value, "params": {k: _plain(v) for k, v in params.items()},
            "attrs": {k: v for k, v in t.user_attrs.items() if k not in (space.params if space else {})
                      and k not in ("traceback", "oof", "defaults")}}
