"""``optileuk list`` and ``optileuk export``: reading studies back from a storage."""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import optuna
import yaml
from rich.table import Table

from optileuk.errors import StorageError
from optileuk.runner._common import MASKS_ATTR, STUDY_ATTR
from optileuk.space import SearchSpace
from optileuk.runner._read import best_trials, pareto_front
from optileuk.storage import open_existing, redact, study_names


def value_meaning(raw: dict | None) -> tuple[str, tuple[str, ...]]:
    """(what a study's value is, the metrics its objective records) from the study's stored file."""
    from optileuk.registry import OBJECTIVES

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


def list_table(url: str) -> Table:
    """Every study of the storage from per-study counts (no trial is read)."""
    from optileuk.runner._read import study_counts

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing(url)
    table = Table(title=f"studies in {redact(url)}")
    for col in ("study", "optimizer", "direction", "complete", "failed", "best value", "value is"):
        table.add_column(col)
    counts = study_counts(storage)
    for fs in storage.get_all_studies():
        c = counts.get(fs._study_id)
        best = "-"
        if c is not None and len(fs.directions) == 1:
            v = c.low if fs.directions[0] == optuna.study.StudyDirection.MINIMIZE else c.high
            best = "-" if v is None else f"{v:.6g}"
        complete = 0 if c is None else c.n(optuna.trial.TrialState.COMPLETE)
        failed = 0 if c is None else c.n(optuna.trial.TrialState.FAIL)
        meaning = value_meaning(fs.user_attrs.get(STUDY_ATTR))[0] if len(fs.directions) == 1 else \
            ", ".join((fs.user_attrs.get(STUDY_ATTR) or {}).get("objectives") or [])
        table.add_row(fs.study_name, str(fs.user_attrs.get("optimizer", "-")),
                      ",".join(d.name.lower() for d in fs.directions), str(complete), str(failed), best, meaning or "-")
    return table


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
    import re

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


def export_config(name: str, url: str, top: int = 1, pick: str | None = None) -> dict[str, Any]:
    """Best trial(s) of study ``name`` merged with the objective config, as plain data; for a
    multi-objective study, the point of its Pareto front that ``pick`` chooses (default: the knee)
    and with ``top`` the next points of the front, nearest the ideal point first."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing(url)
    try:
        study = optuna.load_study(study_name=name, storage=storage)
    except KeyError:
        names = study_names(storage)
        raise StorageError(f"storage: no study named '{name}' in {redact(url)} (studies: {', '.join(names) or 'none'})") from None
    raw = study.user_attrs.get(STUDY_ATTR)
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
    space = SearchSpace.from_dict(raw["search_space"]) if raw else None
    if space is not None and any(getattr(p, "length", None) == "auto" for p in space.params.values()):
        lengths = study.user_attrs.get(MASKS_ATTR)
        if lengths is None:
            raise StorageError(f"storage: study '{name}' has a length: auto mask whose length was not recorded (a "
                               "study run before optileuk recorded it); run it again with the same command to record it")
        space = space.bind(lengths)

    def entry(t) -> dict[str, Any]:
        params = space.from_record(t.params, t.user_attrs) if space else dict(t.params)
        if names is not None:
            return {"trial": t.number, "values": dict(zip(names, t.values)),
                    "params": {k: _plain(v) for k, v in params.items()},
                    "attrs": {k: v for k, v in t.user_attrs.items() if k not in (space.params if space else {})
                              and k != "traceback"}}
        return {"trial": t.number, "value": t.value,
                "params": {k: _plain(v) for k, v in params.items()},
                "attrs": {k: v for k, v in t.user_attrs.items() if k not in (space.params if space else {})
                          and k != "traceback"}}

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
    best = entry(ranked[0])
    out["trial"] = best["trial"]
    meaning, metrics = value_meaning(raw)
    if names is None:
        out["value"] = best["value"]
        if meaning:
            out["value_is"] = meaning
    else:
        out["values"] = best["values"]
    shown = {k: best["attrs"][k] for k in (*metrics, "split", "split_sizes") if k in best["attrs"]}
    if shown:
        out["metrics"] = shown
    out["params"] = best["params"]
    if top > 1:
        out["top"] = [entry(t) for t in ranked]
    return out


def export_text(name: str, url: str, fmt: str, top: int, pick: str | None = None) -> str:
    if fmt not in ("yaml", "json"):
        raise StorageError(f"--format must be yaml or json, got {fmt!r}")
    data = export_config(name, url, top, pick)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)


def metrics_table(metrics: dict[str, Any], run_dir) -> Table:
    """The test-split metrics of ``optileuk train``, for the terminal."""
    table = Table(title=f"{metrics['task']}: scored once on the test split", caption=metrics["split"],
                  show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "auc") if metrics["task"] == "classification" \
        else ("dice", "iou", "ssim", "mean")
    for k in keys:
        v, ci = metrics.get(k), metrics.get(f"{k}_ci95")
        text = "-" if v is None else f"{v:.4f}" + (f"  (95% CI {ci[0]:.3f} to {ci[1]:.3f}, bootstrap)" if ci else "")
        table.add_row(k.replace("_", " "), text)
    if "confusion_matrix" in metrics:
        cm = metrics["confusion_matrix"]
        table.add_row("confusion matrix", "\n".join(" ".join(f"{n:4d}" for n in row) for row in cm)
                      + f"\n(rows: true {', '.join(metrics['classes'])})")
    table.add_row("test images", str(metrics["n_test"]))
    from pathlib import Path

    table.add_row("written to", f"{run_dir}/ ({', '.join(sorted(p.name for p in Path(run_dir).iterdir()))})")
    return table
