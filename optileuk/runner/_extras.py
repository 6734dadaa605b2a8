"""What a study's selection rules need besides the search, run by the same executor and bookkeeping.

* **the anchor** (``selection: anchored``): the objective's defaults, evaluated once as a trial of the
  study (user attrs ``anchor: true`` and ``defaults``; no params, since the defaults need not lie in
  the search space), counted in the trial budget, never told to the optimizer;
* **the race** (``selection: race``): after the search, the top trials evaluated again on new repeats of
  the folds (:class:`optileuk.selection.Race`), each evaluation a trial of the study ``<name>.race``
  (user attr ``race: {of, repeat}``), so that the search's own study, its best value and its
  optimizer never see them. A re-run takes the stored evaluations and runs only the missing ones.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import optuna
from optuna.trial import FrozenTrial, TrialState

from optileuk.folds import REPEAT
from optileuk.plain import jsonable
from optileuk.runner._executors import Job
from optileuk.runner._outcome import Outcome
from optileuk.selection import RACE_PLAN_ATTR, Chooser, Race, race_budget
from optileuk.storage import ANCHOR_ATTR, RACE_ATTR, RACE_SUFFIX, TrialWriter, trials_with_attr


def anchor_stored(storage, study_id: int) -> bool:
    """Whether the study holds its defaults' trial already (finished, whatever its state)."""
    return any(t.state.is_finished() for t in trials_with_attr(storage, study_id, ANCHOR_ATTR))


def anchor_job(defaults: dict[str, Any], options: dict[str, Any]) -> Job:
    """The job that evaluates the objective's defaults (stored with no params)."""
    return Job(("anchor",), {**defaults, **options}, ({}, {}, {}), None,
               {ANCHOR_ATTR: True, "defaults": jsonable(defaults)})


def run_anchor(executor, ledger, defaults: dict[str, Any], options: dict[str, Any]) -> None:
    """Evaluate the defaults and record them as a trial (counted like any candidate)."""
    executor.submit([anchor_job(defaults, options)], ledger.prune_context())
    job, outcome = executor.next_done()
    ledger.record(job, outcome, 0)


class RaceRun:
    """The race of one study: planned from its best trials, run on the executor, stored in ``<name>.race``.

    Args:
        storage, study_id, name, direction: the study raced.
        chooser: the study's selection rules (reads the top trials and the stored race).
        rule: the race rule (``top``, ``budget``).
        first_repeat: the first repeat the search did not use (the objective's ``split.repeats``).
        trials: the study's trial count (the race's budget is a share of it).
    """

    def __init__(self, storage, study_id: int, name: str, direction: str, chooser: Chooser, rule, first_repeat: int,
                 trials: int):
        self.storage, self.study_id, self.name, self.direction = storage, study_id, name, direction
        self.chooser, self.rule, self.first_repeat, self.trials = chooser, rule, first_repeat, trials
        self.evaluated = 0

    def plan(self, top: list[FrozenTrial]) -> dict[str, Any]:
        return {"top": [t.number for t in top], "first_repeat": int(self.first_repeat),
                "budget": race_budget(self.rule.budget, self.trials, self.rule.top),
                "val_share": float(top[0].user_attrs.get("val_share", 0.0)) if top else 0.0}

    def run(self, work, options: dict[str, Any]) -> Race:
        """Run (or finish) the race; ``work.executor`` is asked for only when an evaluation is missing."""
        top = self.chooser.ranked(self.rule.top)
        plan = self.plan(top)
        sid = self._race_study(plan)
        _, results = self.chooser.race_record()
        by_number = {t.number: t for t in top}
        writer = TrialWriter(self.storage, sid, flush_seconds=0.5)
        race = Race(plan["top"], plan["first_repeat"], plan["budget"])
        try:
            while (asked := race.round()) is not None:
                todo = [key for key in asked if key not in results]
                if todo:
                    executor = work.executor
                    executor.submit([self._job(by_number[t], r, options) for t, r in todo])
                    while executor.in_flight:
                        job, outcome = executor.next_done()
                        writer.add(self._frozen(job, outcome))
                        self.evaluated += 1
                        results[job.key[1:]] = self._values(outcome)
                race.tell({key: results[key] for key in asked}, plan["val_share"])
        finally:
            writer.flush()
        return race

    def _race_study(self, plan: dict[str, Any]) -> int:
        name = self.name + RACE_SUFFIX
        try:
            sid = self.storage.get_study_id_from_name(name)
        except KeyError:
            sid = optuna.create_study(study_name=name, storage=self.storage, direction=self.direction)._study_id
        attrs = self.storage.get_study_user_attrs(sid)
        if attrs.get(RACE_PLAN_ATTR) != plan:
            self.storage.set_study_user_attr(sid, RACE_PLAN_ATTR, plan)
        if attrs.get("optimizer") != "race":
            self.storage.set_study_user_attr(sid, "optimizer", "race")
        return sid

    def _job(self, trial: FrozenTrial, repeat: int, options: dict[str, Any]) -> Job:
        config = self.chooser.config(trial)
        extra = {k: v for k, v in options.items() if k != REPEAT}
        extra.pop("optileuk.oof", None)  # a race evaluation keeps no out-of-fold predictions
        return Job(("race", trial.number, repeat), {**config, **extra, REPEAT: repeat},
                   (dict(trial.params), dict(trial.distributions), {}), None,
                   {RACE_ATTR: {"of": trial.number, "repeat": repeat}})

    def _values(self, outcome: Outcome) -> list[float] | None:
        if outcome.state != TrialState.COMPLETE:
            return None
        sign = -1.0 if self.direction == "maximize" else 1.0
        values = outcome.attrs.get("fold_values") or [outcome.value]
        return [sign * float(v) for v in values]

    @staticmethod
    def _frozen(job: Job, o: Outcome) -> FrozenTrial:
        params, dists, _ = job.record
        user = {"optimizer": "race", **job.info, "seconds": round(o.seconds, 6), **o.attrs}
        if o.error:
            user["error"] = o.error
        done = o.state == TrialState.COMPLETE
        return FrozenTrial(number=-1, state=o.state, value=float(np.asarray(o.value).ravel()[0]) if done else None,
                           datetime_start=o.start, datetime_complete=o.end, params=params, distributions=dists,
                           user_attrs=user, system_attrs={}, intermediate_values={}, trial_id=-1)
