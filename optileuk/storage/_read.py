"""Reading a study back without reading every trial.

Optuna's public API reads a study's trials all at once (``get_all_trials``: every param, attr and
intermediate value of every trial, as ORM objects). That is what a resumed run, ``optileuk
list``, ``export`` and ``report`` must not do on a study of 100,000 trials, so on Optuna's RDB
storage (SQLite, PostgreSQL, MySQL) they ask only for what they need with SQLAlchemy Core queries
on Optuna's own tables: counts and best values per study, the trials after a trial number, the
K best trials, or a few columns of every trial. The schema version is checked against the one this
code was written for (as the batched :class:`~optileuk.storage.TrialWriter` does); any
other storage (journal files, Redis, in memory: they hold every trial in memory anyway) or another
schema version takes Optuna's public API.

Every function returns what the public API would (tests compare both paths).
"""

from __future__ import annotations

import datetime as dt
import json
from collections import defaultdict
from dataclasses import dataclass
from typing import Any, Iterable

import numpy as np
from optuna.distributions import json_to_distribution
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

_KNOWN_SCHEMA = {"v3.2.0.a"}  # Optuna 3.2 .. 5.0


def rdb_of(storage: BaseStorage) -> RDBStorage | None:
    """The RDB storage under ``storage`` when its schema is the one these queries know, else ``None``."""
    base = getattr(storage, "_backend", storage)
    if not isinstance(base, RDBStorage):
        return None
    try:
        return base if base.get_current_version() in _KNOWN_SCHEMA else None
    except Exception:
        return None


def _models():
    from optuna.storages._rdb import models

    return models


# ---- per-study summaries ------------------------------------------------------------------------------
@dataclass
class StudyCounts:
    """Trials of one study by state, and its best and worst complete values (first objective)."""

    states: dict[str, int]
    low: float | None
    high: float | None

    def n(self, *states: TrialState) -> int:
        return sum(self.states.get(s.name, 0) for s in states)


def study_counts(storage: BaseStorage) -> dict[int, StudyCounts]:
    """For every study (by id): trial counts by state and the lowest / highest complete value."""
    rdb = rdb_of(storage)
    out: dict[int, StudyCounts] = {}
    if rdb is None:
        for fs in storage.get_all_studies():
            trials = storage.get_all_trials(fs._study_id, deepcopy=False)
            states: dict[str, int] = defaultdict(int)
            for t in trials:
                states[t.state.name] += 1
            vals = [t.values[0] for t in trials if t.state == TrialState.COMPLETE and t.values]
            out[fs._study_id] = StudyCounts(dict(states), min(vals) if vals else None, max(vals) if vals else None)
        return out
    from sqlalchemy import func, select

    m = _models()
    T, V = m.TrialModel.__table__, m.TrialValueModel.__table__
    finite = m.TrialValueModel.TrialValueType.FINITE
    with rdb.engine.connect() as conn:
        states = defaultdict(dict)
        for sid, state, n in conn.execute(select(T.c.study_id, T.c.state, func.count()).group_by(T.c.study_id, T.c.state)):
            states[sid][state.name] = n
        extremes = {sid: (lo, hi) for sid, lo, hi in conn.execute(
            select(T.c.study_id, func.min(V.c.value), func.max(V.c.value)).join(V, V.c.trial_id == T.c.trial_id)
            .where(T.c.state == TrialState.COMPLETE, V.c.objective == 0, V.c.value_type == finite)
            .group_by(T.c.study_id))}
    for sid in set(states) | set(extremes):
        lo, hi = extremes.get(sid, (None, None))
        out[sid] = StudyCounts(states.get(sid, {}), lo, hi)
    return out


# ---- whole trials, a few at a time ----------------------------------------------------------------------
def read_trials(storage: BaseStorage, study_id: int, *, from_number: int = 0,
                numbers: Iterable[int] | None = None) -> list[FrozenTrial]:
    """Trials of a study with ``number >= from_number`` (or exactly ``numbers``), in number order."""
    rdb = rdb_of(storage)
    wanted = None if numbers is None else set(numbers)
    if rdb is None:
        trials = storage.get_all_trials(study_id, deepcopy=False)
        return sorted((t for t in trials if t.number >= from_number and (wanted is None or t.number in wanted)),
                      key=lambda t: t.number)
    if wanted is not None and not wanted:
        return []
    from sqlalchemy import select

    m = _models()
    T = m.TrialModel.__table__
    cond = [T.c.study_id == study_id, T.c.number >= from_number]
    if wanted is not None:
        cond.append(T.c.number.in_(sorted(wanted)))
    ids = select(T.c.trial_id).where(*cond).scalar_subquery()
    with rdb.engine.connect() as conn:
        rows = conn.execute(select(T.c.trial_id, T.c.number, T.c.state, T.c.datetime_start, T.c.datetime_complete)
                            .where(*cond).order_by(T.c.number)).all()
        children = _children(conn, m, ids)
    return [_frozen(r, children) for r in rows]


def _children(conn, m, ids) -> dict[str, dict[int, list]]:
    from sqlalchemy import select

    P, V = m.TrialParamModel.__table__, m.TrialValueModel.__table__
    U, S = m.TrialUserAttributeModel.__table__, m.TrialSystemAttributeModel.__table__
    I = m.TrialIntermediateValueModel.__table__  # noqa: E741
    out: dict[str, dict[int, list]] = {k: defaultdict(list) for k in ("p", "v", "u", "s", "i")}
    for r in conn.execute(select(P.c.trial_id, P.c.param_name, P.c.param_value, P.c.distribution_json)
                          .where(P.c.trial_id.in_(ids)).order_by(P.c.param_id)):
        out["p"][r[0]].append(r[1:])
    for r in conn.execute(select(V.c.trial_id, V.c.objective, V.c.value, V.c.value_type).where(V.c.trial_id.in_(ids))):
        out["v"][r[0]].append((r[1], m.TrialValueModel.stored_repr_to_value(r[2], r[3])))
    for table, k in ((U, "u"), (S, "s")):
        for r in conn.execute(select(table.c.trial_id, table.c.key, table.c.value_json).where(table.c.trial_id.in_(ids))):
            out[k][r[0]].append((r[1], json.loads(r[2])))
    for r in conn.execute(select(I.c.trial_id, I.c.step, I.c.intermediate_value, I.c.intermediate_value_type)
                          .where(I.c.trial_id.in_(ids))):
        out["i"][r[0]].append((r[1], m.TrialIntermediateValueModel.stored_repr_to_intermediate_value(r[2], r[3])))
    return out


_DISTS: dict[str, Any] = {}


def _dist(text: str):
    d = _DISTS.get(text)
    if d is None:
        d = _DISTS[text] = json_to_distribution(text)
    return d


def local_time(utc: dt.datetime | None) -> dt.datetime | None:
    """Optuna's RDB schema keeps naive UTC; FrozenTrials hold naive local time."""
    if utc is None:
        return None
    return utc.replace(tzinfo=dt.timezone.utc).astimezone().replace(tzinfo=None)


def _frozen(row, c: dict[str, dict[int, list]]) -> FrozenTrial:
    tid, number, state, start, complete = row
    params, dists = {}, {}
    for name, internal, dist_json in c["p"].get(tid, ()):
        d = _dist(dist_json)
        params[name], dists[name] = d.to_external_repr(internal), d
    values = None
    if c["v"].get(tid):
        vals = sorted(c["v"][tid])
        values = [v for _, v in vals]
    return FrozenTrial(number=number, state=state, value=None, values=values, datetime_start=local_time(start),
                       datetime_complete=local_time(complete), params=params, distributions=dists,
                       user_attrs=dict(c["u"].get(tid, ())), system_attrs=dict(c["s"].get(tid, ())),
                       intermediate_values=dict(c["i"].get(tid, ())), trial_id=tid)


def best_trials(storage: BaseStorage, study_id: int, k: int, *, maximize: bool) -> list[FrozenTrial]:
    """The ``k`` best complete trials (first objective), best first; ties by trial number."""
    rdb = rdb_of(storage)
    if rdb is None:
        done = [t for t in storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.COMPLETE,)) if t.values]
        return sorted(done, key=lambda t: ((-t.values[0] if maximize else t.values[0]), t.number))[:k]
    from sqlalchemy import case, select

    m = _models()
    T, V = m.TrialModel.__table__, m.TrialValueModel.__table__
    kind = m.TrialValueModel.TrialValueType
    # +inf / -inf are stored as NULL with their type: rank them where they belong
    rank = case((V.c.value_type == kind.INF_NEG, 0), (V.c.value_type == kind.FINITE, 1), else_=2)
    order = [rank.desc(), V.c.value.desc()] if maximize else [rank, V.c.value]
    with rdb.engine.connect() as conn:
        numbers = conn.execute(select(T.c.number).join(V, V.c.trial_id == T.c.trial_id)
                               .where(T.c.study_id == study_id, T.c.state == TrialState.COMPLETE, V.c.objective == 0)
                               .order_by(*order, T.c.number).limit(k)).scalars().all()
    by_number = {t.number: t for t in read_trials(storage, study_id, numbers=numbers)}
    return [by_number[n] for n in numbers]


def trials_with_attr(storage: BaseStorage, study_id: int, key: str) -> list[FrozenTrial]:
    """The trials of a study that carry the user attr ``key`` (e.g. the anchor), in number order."""
    rdb = rdb_of(storage)
    if rdb is None:
        return sorted((t for t in storage.get_all_trials(study_id, deepcopy=False) if key in t.user_attrs),
                      key=lambda t: t.number)
    from sqlalchemy import select

    m = _models()
    T, U = m.TrialModel.__table__, m.TrialUserAttributeModel.__table__
    with rdb.engine.connect() as conn:
        numbers = conn.execute(select(T.c.number).join(U, U.c.trial_id == T.c.trial_id)
                               .where(T.c.study_id == study_id, U.c.key == key).order_by(T.c.number)).scalars().all()
    return read_trials(storage, study_id, numbers=numbers)


# ---- columns of every trial (the report) ----------------------------------------------------------------
@dataclass
class Columns:
    """One study's finished trials as columns, in trial-number order."""

    number: np.ndarray
    state: list[str]
    values: list[list[float] | None]
    start: list[dt.datetime | None]
    complete: list[dt.datetime | None]


def finished_columns(storage: BaseStorage, study_id: int) -> Columns:
    """Number, state, values and times of every finished trial (no params, no attrs)."""
    finished = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)
    rdb = rdb_of(storage)
    if rdb is None:
        trials = sorted(storage.get_all_trials(study_id, deepcopy=False, states=finished), key=lambda t: t.number)
        return Columns(np.array([t.number for t in trials], dtype=int), [t.state.name for t in trials],
                       [list(t.values) if t.values else None for t in trials],
                       [t.datetime_start for t in trials], [t.datetime_complete for t in trials])
    from sqlalchemy import select

    m = _models()
    T, V = m.TrialModel.__table__, m.TrialValueModel.__table__
    cond = [T.c.study_id == study_id, T.c.state.in_(finished)]
    with rdb.engine.connect() as conn:
        rows = conn.execute(select(T.c.trial_id, T.c.number, T.c.state, T.c.datetime_start, T.c.datetime_complete)
                            .where(*cond).order_by(T.c.number)).all()
        values: dict[int, list] = defaultdict(list)
        for tid, obj, v, kind in conn.execute(
                select(V.c.trial_id, V.c.objective, V.c.value, V.c.value_type).join(T, V.c.trial_id == T.c.trial_id)
                .where(*cond)):
            values[tid].append((obj, m.TrialValueModel.stored_repr_to_value(v, kind)))
    return Columns(np.array([r[1] for r in rows], dtype=int), [r[2].name for r in rows],
                   [[v for _, v in sorted(values[r[0]])] if values.get(r[0]) else None for r in rows],
                   [local_time(r[3]) for r in rows], [local_time(r[4]) for r in rows])


def nondominated(points: np.ndarray, directions: list[str]) -> np.ndarray:
    """Indices of the rows of ``points`` no other row dominates (duplicates kept once, the first)."""
    sign = np.array([1.0 if d == "minimize" else -1.0 for d in directions])
    p = np.asarray(points, dtype=float) * sign
    keep = []
    for i in range(len(p)):
        le = np.all(p <= p[i], axis=1)
        lt = np.any(p < p[i], axis=1)
        dominated = np.any(le & lt)
        duplicate = np.any(np.all(p[:i] == p[i], axis=1))
        if not dominated and not duplicate:
            keep.append(i)
    return np.array(keep, dtype=int)


def pareto_front(storage: BaseStorage, study_id: int, directions: list[str]) -> list[FrozenTrial]:
    """The complete trials of a multi-objective study that no other complete trial dominates,
    in trial-number order (read from the values column; only the front's trials are read whole)."""
    c = finished_columns(storage, study_id)
    rows = [(int(n), v) for n, s, v in zip(c.number, c.state, c.values) if s == "COMPLETE" and v and len(v) == len(directions)]
    if not rows:
        return []
    keep = nondominated(np.array([v for _, v in rows]), directions)
    return read_trials(storage, study_id, numbers=[rows[i][0] for i in keep])
