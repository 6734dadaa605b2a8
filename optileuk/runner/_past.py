"""What earlier runs of a study left in its storage, read once when a run starts.

Finished trials are indexed by where they belong (``(generation, batch, index)``, or the ticket
of an asynchronous ask) so that a resumed run takes their values instead of evaluating them
again. Trials an interrupted older run left RUNNING or WAITING are failed here, with a reason,
and do not count as evaluated candidates.
"""

from __future__ import annotations

import optuna
from optuna.trial import FrozenTrial, TrialState

from optileuk.runner._common import FINISHED, STALE_KEY
from optileuk.runner._trials import told_value, trial_key

STALE_REASON = "left unfinished by an interrupted earlier run; failed when the study was resumed"


class Past:
    """The stored trials of one study.

    Attributes:
        done: candidates evaluated so far (finished trials, stale ones excluded).
        best, worst: best and worst oriented (minimised) value of the complete trials.
        known: finished trials by key.
        trials: every stored trial after the clean-up, in number order.
    """

    def __init__(self, study: optuna.Study, sign: float):
        self.sign = sign
        trials = study.get_trials(deepcopy=False)
        unfinished = [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]
        if unfinished:
            _fail_stale(study, unfinished)
            trials = study.get_trials(deepcopy=False)
        self.trials = trials
        self.known: dict[tuple, FrozenTrial] = {}
        keys = set()
        for t in trials:
            if t.state not in FINISHED or t.system_attrs.get(STALE_KEY):
                continue
            key = trial_key(t)
            keys.add(key if key is not None else ("trial", t.number))
            if key is not None:
                self.known[key] = t
        self.done = len(keys)
        oriented = [sign * t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        self.best = min(oriented) if oriented else None
        self.worst = max(oriented) if oriented else None

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


def _fail_stale(study: optuna.Study, trials: list[FrozenTrial]) -> None:
    storage = study._storage
    for t in trials:
        try:
            storage.set_trial_user_attr(t._trial_id, "error", STALE_REASON)
            storage.set_trial_system_attr(t._trial_id, STALE_KEY, True)
            storage.set_trial_state_values(t._trial_id, TrialState.FAIL)
        except (RuntimeError, optuna.exceptions.UpdateFinishedTrialError):
            pass  # finished meanwhile by whoever held it
