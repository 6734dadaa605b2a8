"""What earlier runs of a study left in its storage, read once when a run starts.

A run saves, with the optimizer's state, how many trials the study held at that moment and the
counts the run needs (candidates done, best and worst values). A resumed run reads only the trials
stored after that save (:mod:`optileuk.storage`): the rest of the study is summed up in the
saved state, so resuming a study of 100,000 trials reads a generation's worth. A study without a
saved state (a first run, a rebuilt state) or with a pruner (which compares a candidate with every
earlier trial) reads all of them.

Finished trials are indexed by where they belong (``(generation, batch, index)``, or the ticket
of an asynchronous ask) so that a resumed run takes their values instead of evaluating them
again. Trials an interrupted older run left RUNNING or WAITING are failed here, with a reason,
and do not count as evaluated candidates.
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from optileuk.runner._trials import oriented, told_value, trial_key
from optileuk.storage import ANCHOR_ATTR, FINISHED, STALE_KEY, read_trials

STALE_REASON = "left unfinished by an interrupted earlier run; failed when the study was resumed"


class Past:
    """The stored trials of one study that a run needs.

    Args:
        storage, study_id: the study.
        sign: +1 to minimise, -1 to maximise (an array of them, one per objective, when several).
        saved: the run state saved by the last run (``None``: read every trial).
        full: read every trial even with a saved state (a pruner needs them all).

    Attributes:
        done: candidates evaluated so far (finished trials, stale ones excluded).
        best, worst: best and worst oriented (minimised) value of the complete trials.
        stored: trials in the study (the next trial's number).
        known: finished trials read, by key.
        trials: the trials read (every trial when ``saved`` is ``None`` or ``full``), in number order.
    """

    def __init__(self, storage: BaseStorage, study_id: int, sign: float, saved: dict[str, Any] | None = None,
                 full: bool = False):
        self.sign = sign
        since = 0 if (saved is None or full) else int(saved["stored"])
        trials = read_trials(storage, study_id, from_number=since)
        unfinished = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if unfinished:
            _fail_stale(storage, unfinished)
            trials = read_trials(storage, study_id, from_number=since)
        self.trials = trials
        self.stored = max([since] + [t.number + 1 for t in trials])
        self.known: dict[tuple, FrozenTrial] = {}
        keys = set()
        for t in trials:
            if t.state not in FINISHED or t.system_attrs.get(STALE_KEY):
                continue
            key = trial_key(t)
            keys.add(key if key is not None else ("trial", t.number))
            if key is not None:
                self.known[key] = t
        seen = [oriented(t, sign) for t in trials if t.state == TrialState.COMPLETE and t.values]
        self.done = len(keys)
        self.best = _pick(np.min, *seen)
        self.worst = _pick(np.max, *seen)
        if since:  # the trials before the saved state are summed up in it
            self.done += int(saved["done"])
            self.best = _pick(np.min, saved.get("best"), self.best)
            self.worst = _pick(np.max, saved.get("worst"), self.worst)

    def match(self, key: tuple, record: tuple) -> FrozenTrial | None:
        """The stored trial at ``key`` if it holds the same candidate (params and mask attrs)."""
        old = self.known.get(key)
        params, _, attrs = record
        if old is not None and old.params == params and all(old.user_attrs.get(k) == v for k, v in attrs.items()):
            return old
        return None

    def told(self, trial: FrozenTrial) -> float:
        return told_value(trial, self.sign, self.trials)

    def tickets(self) -> dict[int, FrozenTrial]:
        """Asynchronous mode: stored trials by ticket."""
        return {key[1]: t for key, t in self.known.items() if key[0] == "ask"}


class Duplicates:
    """Complete trials by candidate (``runner.reuse_duplicates``): a candidate equal to one of them
    takes its stored value instead of being evaluated again; it is not stored and does not count
    in ``budget.trials``.

    Built from every stored trial (``Past`` reads them all when reuse is on), so that a resumed run
    knows exactly the candidates a run that was never interrupted would know.
    """

    def __init__(self, space, past: Past):
        self.values: dict[str, Any] = {}
        for t in past.trials:
            if t.state != TrialState.COMPLETE or t.system_attrs.get(STALE_KEY) or not t.values:
                continue
            if "optimizer" not in t.user_attrs or t.user_attrs.get(ANCHOR_ATTR):
                continue  # added by hand (plain Optuna), or the defaults: not a candidate of this space
            self.values[self.key(space.record(space.from_record(t.params, t.user_attrs)))] = past.told(t)

    @staticmethod
    def key(record: tuple) -> str:
        params, _, attrs = record
        return json.dumps([params, attrs], sort_keys=True, default=repr)

    def get(self, record: tuple):
        """The told value of the complete trial equal to ``record``, or ``None``."""
        return self.values.get(self.key(record))

    def add(self, record: tuple, told) -> None:
        self.values[self.key(record)] = told


def _pick(fn, *values):
    """Elementwise min/max of the values given (floats, or arrays of one value per objective)."""
    vals = [np.asarray(v, dtype=float) for v in values if v is not None]
    if not vals:
        return None
    out = fn(np.stack(vals), axis=0)
    return float(out) if out.ndim == 0 else out


def _fail_stale(storage: BaseStorage, trials: list[FrozenTrial]) -> None:
    for t in trials:
        try:
            storage.set_trial_user_attr(t._trial_id, "error", STALE_REASON)
            storage.set_trial_system_attr(t._trial_id, STALE_KEY, True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # finished meanwhile by whoever held it
