"""The run's bookkeeping, one path for every executor and mode.

:class:`Ledger` turns each finished candidate into an Optuna trial (params with their
distributions, user attrs, the pruner's attrs, the value the optimizer was told), hands it to the
batched :class:`~optileuk.storage.TrialWriter`, and keeps the counts, the best and worst
values, the consecutive-failure check and the pruner's history.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from optileuk.runner._common import RunFailed
from optileuk.runner._executors import Job
from optileuk.runner._outcome import Outcome, PruneContext, history_entry
from optileuk.runner._past import Duplicates, Past
from optileuk.runner._trials import penalty_from
from optileuk.storage import TOLD_KEY, TrialWriter


@dataclass
class Progress:
    done: int
    total: int | None
    best: float | None
    elapsed: float
    generation: int


class Ledger:
    """Counts and records the candidates of one run.

    Args:
        past: what earlier runs stored (counts, best and worst carry on from it).
        writer: where finished trials go.
        optimizer: the optimizer's name (a user attr of every trial).
        sign: +1 to minimise, -1 to maximise (values given to the optimizer are ``sign * value``); an
            array of them, one per objective, in a multi-objective study (values are then arrays).
        budget: ``budget.trials`` (``None``: no trial budget).
        max_consecutive: ``runner.max_consecutive_failures``.
        source: the study file, for messages.
        prune: ``(pruner section, study name, direction)`` when the study has a pruner.
        on_progress: called after every finished candidate.
        duplicates: complete trials by candidate when ``runner.reuse_duplicates`` is on.
    """

    CONVERGED_AFTER = 1000  # candidates in a row that all equal complete trials: the search has converged

    def __init__(self, past: Past, writer: TrialWriter, *, optimizer: str, sign: float, budget: int | None,
                 max_consecutive: int, source: str, prune: tuple[dict, str, str] | None = None,
                 on_progress: Callable[[Progress], None] | None = None, duplicates: Duplicates | None = None):
        self.writer, self.optimizer, self.sign, self.budget = writer, optimizer, sign, budget
        self.max_consecutive, self.source, self.on_progress = max_consecutive, source, on_progress
        self.done, self.best, self.worst = past.done, past.best, past.worst
        self.evaluated = self.reused = self.failed = self.pruned = self.consecutive = 0
        self.duplicates, self.duplicated, self._in_a_row = duplicates, 0, 0
        self.t0 = time.perf_counter()
        self._prune = prune
        self._history = [history_entry(t) for t in past.trials] if prune else None
        self._context: PruneContext | None = None

    # ---- questions ---------------------------------------------------------------------------
    def room(self) -> int | None:
        """Candidates the trial budget still allows (``None``: no trial budget)."""
        return None if self.budget is None else max(self.budget - self.done, 0)

    def penalty(self):
        """What a failed candidate tells the optimizer: clearly worse than every complete one so far."""
        return penalty_from(self.worst, self.sign)

    def prune_context(self) -> PruneContext | None:
        """The pruner's view of the study now (one object per version of the history)."""
        if self._history is None:
            return None
        if self._context is None:
            pruner, name, direction = self._prune
            self._context = PruneContext(pruner, name, direction, tuple(self._history))
        return self._context

    # ---- recording ---------------------------------------------------------------------------
    def reused_one(self) -> None:
        self.reused += 1

    def duplicate(self, record: tuple):
        """The told value of a complete trial equal to this candidate (``None``: evaluate it); counted."""
        if self.duplicates is None:
            return None
        told = self.duplicates.get(record)
        if told is not None:
            self.duplicated += 1
            self._in_a_row += 1
        return told

    def converged(self) -> bool:
        """Whether the last :attr:`CONVERGED_AFTER` candidates all equalled complete trials."""
        return self._in_a_row >= self.CONVERGED_AFTER

    def dedup_key(self, record: tuple) -> str | None:
        return None if self.duplicates is None else self.duplicates.key(record)

    def record(self, job: Job, outcome: Outcome, generation: int) -> float:
        """Store one finished candidate; return the value the optimizer is told."""
        trial, told = self._frozen(job, outcome)
        self.writer.add(trial)
        self.done += 1
        self.evaluated += 1
        self._in_a_row = 0
        if outcome.state == TrialState.COMPLETE:
            if self.duplicates is not None:
                self.duplicates.add(job.record, told)
            self.consecutive = 0
            self.worst = told if self.worst is None else np.maximum(self.worst, told)
            self.best = told if self.best is None else np.minimum(self.best, told)
        elif outcome.state == TrialState.PRUNED:
            self.consecutive = 0
            self.pruned += 1
        else:
            self.failed += 1
            self.consecutive += 1
            if self.consecutive >= self.max_consecutive:
                self.writer.flush()
                raise RunFailed(f"{self.source}: stopped after {self.consecutive} consecutive failed candidates "
                                f"(runner.max_consecutive_failures); last error: {outcome.error}")
        if self._history is not None:
            entry = history_entry(trial)
            entry.number = len(self._history)  # the number the writer gives it (trials are written in order)
            self._history.append(entry)
            self._context = None
        if self.on_progress:
            best = None if self.best is None else float(np.ravel(self.sign * self.best)[0])  # (first objective)
            self.on_progress(Progress(self.done, self.budget, best, time.perf_counter() - self.t0, generation))
        return told

    def _frozen(self, job: Job, o: Outcome) -> tuple[FrozenTrial, float]:
        params, dists, space_attrs = job.record
        user = {"optimizer": self.optimizer, **_key_attrs(job.key), **job.info, "seconds": round(o.seconds, 6),
                **space_attrs, **o.attrs}
        system: dict[str, Any] = dict(o.system_attrs)
        multi = bool(np.ndim(self.sign))
        if o.state == TrialState.COMPLETE:
            told = self.sign * (np.asarray(o.value, dtype=float) if multi else o.value)
        elif o.state == TrialState.PRUNED and o.value is not None:
            told = self.sign * o.value  # a pruned candidate gives the optimizer its last reported value
            user["pruned"] = o.error
            system[TOLD_KEY] = told
        else:
            told = self.penalty()
            user["error"] = o.error
            system[TOLD_KEY] = told.tolist() if multi else told
        done = o.state == TrialState.COMPLETE
        trial = FrozenTrial(number=-1, state=o.state, value=o.value if done and not multi else None,
                            values=[float(v) for v in o.value] if done and multi else None, datetime_start=o.start,
                            datetime_complete=o.end, params=params, distributions=dists, user_attrs=user, system_attrs=system, intermediate_values=o.intermediate, trial_id=-1)
        return trial, told


def _key_attrs(key: tuple) -> dict[str, Any]:
    if key[0] == "ask":
        return {"ask": key[1]}
    if key[0] == "anchor":  # the objective's defaults (selection: anchored): no place in the optimizer's run
        return {}
    return {"generation": key[0], "batch": key[1], "index": key[2]}
