"""Read the runs of comparisons back from a storage, grouped by comparison."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
import optuna
from optuna.study import StudyDirection
from optuna.trial import FrozenTrial, TrialState

from optileuk.compare._plan import NAME
from optileuk.errors import StorageError


@dataclass
class RunData:
    """One study: its finished trials in evaluation order (trial number)."""

    name: str
    label: str
    seed: int
    study_id: int
    directions: list[str]
    trials: list[FrozenTrial]
    user_attrs: dict[str, Any]
    metric_names: list[str] | None = None  # study.set_metric_names(...)

    @property
    def multi(self) -> bool:
        return len(self.directions) > 1

    @property
    def minimize(self) -> bool:
        return self.directions[0] == "minimize"

    @property
    def values(self) -> np.ndarray:
        """Value of each finished trial in order; NaN for failed and pruned ones (they still count)."""
        return np.array([t.value if t.state == TrialState.COMPLETE and t.values and len(t.values) == 1 else np.nan
                         for t in self.trials], dtype=float)

    @property
    def seconds(self) -> np.ndarray:
        """Wall seconds from the run's first trial start to each trial's completion."""
        starts = [t.datetime_start for t in self.trials if t.datetime_start]
        if not starts:
            return np.zeros(len(self.trials))
        t0 = min(starts)
        return np.array([(t.datetime_complete - t0).total_seconds() if t.datetime_complete else np.nan
                         for t in self.trials])

    def best_so_far(self) -> np.ndarray:
        v = self.values
        filled = np.where(np.isnan(v), np.inf if self.minimize else -np.inf, v)
        best = np.minimum.accumulate(filled) if self.minimize else np.maximum.accumulate(filled)
        return np.where(np.isinf(best), np.nan, best)

    @property
    def final_best(self) -> float:
        b = self.best_so_far()
        return float(b[-1]) if len(b) else float("nan")

    def best_trial(self) -> FrozenTrial | None:
        done = [t for t in self.trials if t.state == TrialState.COMPLETE]
        if not done or self.multi:
            return None
        return (min if self.minimize else max)(done, key=lambda t: t.value)


@dataclass
class Group:
    """The runs of one comparison (``<base>.<label>.s<seed>``), or one plain study on its own."""

    base: str
    runs: list[RunData] = field(default_factory=list)

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

    @property
    def config(self) -> dict[str, Any]:
        from optileuk.runner import STUDY_ATTR

        return self.runs[0].user_attrs.get(STUDY_ATTR) or {}


def collect(storage, url: str, prefix: str | None = None) -> list[Group]:
    """Every study of ``storage`` whose name starts with ``prefix``, grouped by comparison.

    Studies named ``<base>.<optimizer>.s<seed>`` (as ``optileuk compare`` names them) form one
    group per base; any other study is a group of one run.
    """
    groups: dict[str, Group] = {}
    names = []
    for fs in storage.get_all_studies():
        names.append(fs.study_name)
        if prefix and not fs.study_name.startswith(prefix):
            continue
        m = NAME.match(fs.study_name)
        if m:
            base, label, seed = m["base"], m["label"], int(m["seed"])
        else:
            base, label, seed = fs.study_name, str(fs.user_attrs.get("optimizer", "optuna")), 0
        trials = storage.get_all_trials(fs._study_id, deepcopy=False,
                                        states=(TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL))
        trials = sorted(trials, key=lambda t: t.number)
        if not trials:
            continue
        dirs = ["minimize" if d == StudyDirection.MINIMIZE else "maximize" for d in fs.directions]
        groups.setdefault(base, Group(base)).runs.append(
            RunData(fs.study_name, label, seed, fs._study_id, dirs, trials, dict(fs.user_attrs),
                    fs.system_attrs.get("study:metric_names")))
    if not groups:
        shown = ", ".join(names[:10]) + (" ..." if len(names) > 10 else "") or "none"
        what = f"starting with '{prefix}' " if prefix else ""
        raise StorageError(f"storage: no study {what}with finished trials in {url} (studies: {shown})")
    return sorted(groups.values(), key=lambda g: g.base)


def load_optuna_study(storage, run: RunData) -> optuna.Study:
    return optuna.load_study(study_name=run.name, storage=storage)
