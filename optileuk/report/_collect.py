"""Read the runs of comparisons back from a storage, grouped by comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial

from optileuk.compare import NAME, REF_NAME
from optileuk.errors import StorageError
from optileuk.storage import Columns, best_trials, finished_columns, redact


@dataclass
class RunData:
    """One study: its finished trials in evaluation order (trial number), as columns."""

    name: str
    label: str
    seed: int
    study_id: int
    directions: list[str]
    columns: Columns
    user_attrs: dict[str, Any]
    metric_names: list[str] | None = None  # study.set_metric_names(...)
    storage: Any = None
    ref: np.ndarray | None = None  # multi-objective: the comparison's hypervolume reference point (minimised)

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    @property
    def minimize(self) -> bool:
        """Whether lower is better for what runs are ranked by (a multi-objective run: its hypervolume, no)."""
        return False if self.multi else self.directions[0] == "minimize"

    @property
    def signs(self) -> np.ndarray:
        return np.array([1.0 if d == "minimize" else -1.0 for d in self.directions])

    def points(self) -> np.ndarray:
        """The complete trials' values, each objective oriented to be minimised (rows in trial order)."""
        vals = self.complete_values()
        return np.array(vals, dtype=float).reshape(len(vals), len(self.directions)) * self.signs

    def hypervolume_so_far(self) -> np.ndarray:
        """Hypervolume (moocore) of the front of the trials up to each finished trial, against :attr:`ref`;
        NaN before the first complete trial."""
        import moocore

        from optileuk.storage import nondominated

        c, out = self.columns, np.full(self.n, np.nan)
        front = np.empty((0, len(self.directions)))
        hv = np.nan
        for i, (state, v) in enumerate(zip(c.state, c.values)):
            if state == "COMPLETE" and v and len(v) == len(self.directions):
                p = np.asarray(v, dtype=float) * self.signs
                if np.isnan(hv):
                    hv = 0.0
                if np.all(p < self.ref) and not np.any(np.all(front <= p, axis=1)):
                    front = np.vstack([front, p])
                    front = front[nondominated(front, ["minimize"] * len(p))]
                    hv = float(moocore.hypervolume(front, ref=self.ref))
            out[i] = hv
        return out

    @property
    def n(self) -> int:
        """Finished trials (failed and pruned ones count: they were evaluations)."""
        return len(self.columns.number)

    @property
    def values(self) -> np.ndarray:
        """Value of each finished trial in order; NaN for failed and pruned ones (they still count)."""
        c = self.columns
        return np.array([v[0] if s == "COMPLETE" and v and len(v) == 1 else np.nan
                         for s, v in zip(c.state, c.values)], dtype=float)

    def complete_values(self) -> list[list[float]]:
        """Every objective's value of each complete trial (multi-objective runs)."""
        return [v for s, v in zip(self.columns.state, self.columns.values) if s == "COMPLETE" and v]

    @property
    def seconds(self) -> np.ndarray:
        """Wall seconds from the run's first trial start to each trial's completion."""
        c = self.columns
        starts = [t for t in c.start if t]
        if not starts:
            return np.zeros(self.n)
        t0 = min(starts)
        return np.array([(t - t0).total_seconds() if t else np.nan for t in c.complete])

    def best_so_far(self) -> np.ndarray:
        """Best value so far after each finished trial (a multi-objective run: its hypervolume so far)."""
        if self.multi:
            return self.hypervolume_so_far()
        v = self.values
        filled = np.where(np.isnan(v), np.inf if self.minimize else -np.inf, v)
        best = np.minimum.accumulate(filled) if self.minimize else np.maximum.accumulate(filled)
        return np.where(np.isinf(best), np.nan, best)

    @property
    def final_best(self) -> float:
        b = self.best_so_far()
        return float(b[-1]) if len(b) else float("nan")

    def best_trial(self) -> FrozenTrial | None:
        """The best complete trial, read on its own from the storage."""
        if self.multi:
            return None
        best = best_trials(self.storage, self.study_id, 1, maximize=not self.minimize)
        return best[0] if best else None


@dataclass
class ReferenceData:
    """A fixed candidate scored once with a comparison's objective (``references:``): a line to beat."""

    label: str
    name: str
    value: float
    params: dict[str, Any]
    note: str
    attrs: dict[str, Any]

    def beaten(self, group: "Group", label: str) -> tuple[int, int]:
        """(runs of ``label`` whose final best is strictly better than this reference, runs)."""
        runs = group.of(label)
        better = [r.final_best < self.value if group.minimize else r.final_best > self.value
                  for r in runs if not np.isnan(r.final_best)]
        return sum(better), len(runs)

    def describe(self) -> str:
        params = ", ".join(f"{k} {v}" for k, v in self.params.items()) or "the objective's defaults"
        return f"{self.label} ({params}{'; ' + self.note if self.note else ''})"

    def line(self, group: "Group") -> str:
        beats = ", ".join(f"{lab} {'%d/%d' % self.beaten(group, lab)}" for lab in group.labels)
        return f"reference {self.describe()}: {self.value:.4g}; runs better than it: {beats}"


@dataclass
class Group:
    """The runs of one comparison (``<base>.<label>.s<seed>``), or one plain study on its own."""

    base: str
    runs: list[RunData] = field(default_factory=list)
    references: list[ReferenceData] = field(default_factory=list)

    @property
    def labels(self) -> list[str]:
        return list(dict.fromkeys(r.label for r in self.runs))

    @property
    def seeds(self) -> list[int]:
        return sorted({r.seed for r in self.runs})

    def of(self, label: str) -> list[RunData]:
        return sorted((r for r in self.runs if r.label == label), key=lambda r: r.seed)

    @property
    def multi(self) -> bool:
        return any(r.multi for r in self.runs)

    @property
    def minimize(self) -> bool:
        return self.runs[0].minimize

    ref: np.ndarray | None = None

    def set_reference(self) -> None:
        """One hypervolume reference point for every run of the comparison: each objective's worst
        value over all their complete trials, plus 10% of its range (minimised orientation)."""
        pts = np.vstack([r.points() for r in self.runs if len(r.points())] or [np.zeros((1, len(self.runs[0].directions)))])
        lo, hi = pts.min(0), pts.max(0)
        self.ref = hi + np.where(hi > lo, 0.1 * (hi - lo), 1.0)
        for r in self.runs:
            r.ref = self.ref

    @property
    def reference_point(self) -> list[float]:
        """:attr:`ref` in the objectives' own orientation (what the report shows)."""
        return (self.ref * self.runs[0].signs).tolist()

    @property
    def config(self) -> dict[str, Any]:
        from optileuk.storage import STUDY_ATTR

        return self.runs[0].user_attrs.get(STUDY_ATTR) or {}


def collect(storage, url: str, prefix: str | None = None, *, allow_empty: bool = False) -> list[Group]:
    """Every study of ``storage`` whose name starts with ``prefix``, grouped by comparison.

    Studies named ``<base>.<optimizer>.s<seed>`` (as ``optileuk compare`` names them) form one
    group per base; any other study is a group of one run.
    """
    from optileuk.assess import PART_ATTR
    from optileuk.compare import REFERENCE_ATTR
    from optileuk.selection import RACE_PLAN_ATTR

    groups: dict[str, Group] = {}
    names, refs = [], []
    for fs in storage.get_all_studies():
        names.append(fs.study_name)
        if prefix and not fs.study_name.startswith(prefix):
            continue
        if PART_ATTR in fs.user_attrs:  # an assessment's inner study: shown in its assessment's section
            continue
        if RACE_PLAN_ATTR in fs.user_attrs:  # a study's race: its selection, shown with the study
            continue
        r = REF_NAME.match(fs.study_name)
        if r and REFERENCE_ATTR in fs.user_attrs:  # a comparison's reference: a line, not a run
            refs.append((r["base"], fs))
            continue
        m = NAME.match(fs.study_name)
        if m:
            base, label, seed = m["base"], m["label"], int(m["seed"])
        else:
            base, label, seed = fs.study_name, str(fs.user_attrs.get("optimizer", "optuna")), 0
        columns = finished_columns(storage, fs._study_id)
        if not len(columns.number):
            continue
        dirs = ["minimize" if d == StudyDirection.MINIMIZE else "maximize" for d in fs.directions]
        groups.setdefault(base, Group(base)).runs.append(
            RunData(fs.study_name, label, seed, fs._study_id, dirs, columns, dict(fs.user_attrs),
                    fs.system_attrs.get("study:metric_names"), storage))
    for base, fs in refs:
        done = [t for t in storage.get_all_trials(fs._study_id, deepcopy=False) if t.state.name == "COMPLETE"]
        if base in groups and done and not groups[base].multi:
            spec = fs.user_attrs[REFERENCE_ATTR]
            groups[base].references.append(ReferenceData(spec["label"], fs.study_name, float(done[-1].value),
                                                         dict(spec.get("params") or {}), str(spec.get("note") or ""),
                                                         dict(done[-1].user_attrs)))
    for g in groups.values():
        if g.multi:
            g.set_reference()
    if not groups and not allow_empty:
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") or "none"
        what = f"starting with '{prefix}' " if prefix else ""
        raise StorageError(f"storage: no study {what}with finished trials in {redact(url)} (studies: {shown})")
    return sorted(groups.values(), key=lambda g: g.base)
