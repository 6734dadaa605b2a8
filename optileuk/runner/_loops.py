"""The runner's two loops over one executor and one ledger.

* :class:`GenerationalLoop` -- the optimizer's ``step(evaluate)``: a whole generation is handed
  to the executor and told back when its last candidate is in. Only whole generations are saved;
  a generation cut by the budget, a timeout or a crash is replayed on resume, its finished
  candidates taking their stored values.
* :class:`AsyncLoop` -- ``runner: {mode: async}``: a new candidate is asked whenever a worker is
  free and told as soon as it is back. The saved state holds the candidates in flight; on resume
  those already stored are told, the others evaluated again, and trials finished after the last
  save are injected into the optimizer, so no finished candidate is evaluated twice.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import numpy as np
from optuna.storages import BaseStorage

from optileuk import plain
from optileuk.runner._executors import Executor, Job
from optileuk.runner._ledger import Ledger
from optileuk.runner._past import Past
from optileuk.runner._stop import Stop, StopRules
from optileuk.runner._trials import pack_state
from optileuk.storage import STATE_KEY, TrialWriter


class StateSaver:
    """Saves the run state in the study at most every ``every`` seconds (trials first).

    With the optimizer's state go the counts a resumed run starts from (candidates done, best
    and worst told values) and how many trials the study holds, so that the resumed run reads
    only the trials stored after this save.
    """

    def __init__(self, storage: BaseStorage, study_id: int, writer: TrialWriter, every: float, ledger: Ledger,
                 stored: int, lease=None):
        self.storage, self.study_id, self.writer, self.every = storage, study_id, writer, every
        self.ledger, self._stored0, self.lease = ledger, stored, lease
        self._last = time.monotonic()

    def due(self) -> bool:
        return time.monotonic() - self._last >= self.every

    def counts(self) -> dict[str, Any]:
        """What the run has done so far; taken together with the optimizer's state it goes with."""
        led = self.ledger
        plain_ = lambda v: None if v is None else (np.asarray(v).tolist())  # noqa: E731 (float or one per objective)
        return {"done": led.done, "best": plain_(led.best), "worst": plain_(led.worst),
                "stored": self._stored0 + led.evaluated}

    def save(self, run: dict[str, Any], optimizer_state: dict[str, Any]) -> None:
        """``run``: the loop's position and :meth:`counts` taken with the state; ``optimizer_state``:
        as :func:`optileuk.plain.encode` made it."""
        self.writer.flush()  # a state never runs ahead of the trials it was told
        if self.lease is not None:
            self.lease.check()  # a driver that lost its lease must not overwrite the new holder's state
        self.storage.set_study_system_attr(self.study_id, STATE_KEY, pack_state(run, optimizer_state))
        self._last = time.monotonic()


@dataclass
class RunParts:
    """What a loop works with."""

    space: Any
    optimizer: Any
    executor: Executor
    ledger: Ledger
    past: Past
    saver: StateSaver
    stop: StopRules
    objectives: int = 1  # values per candidate
    options: dict[str, Any] | None = None  # evaluation options every candidate carries (optileuk.oof)

    def __post_init__(self) -> None:
        self._box = self.space.box

    def job(self, key: tuple, x: np.ndarray, token: Any = None, info: dict | None = None) -> Job:
        """The job for a box point: decoded (always a valid config) and recorded as it will be stored."""
        config = self.space.decode(self._box.clip(np.asarray(x, dtype=float)))
        return Job(key, {**config, **(self.options or {})}, self.space.record(config), token, dict(info or {}))

    def stored_value(self, job: Job) -> Any:
        """The value told for ``job`` by a trial that finished before a crash (counted as reused), or
        ``None``: it is evaluated again."""
        old = self.past.match(job.key, job.record)
        if old is None:
            return None
        self.ledger.reused_one()
        return self.past.told(old)

    def next_done(self) -> tuple[Job, Any]:
        """The next finished job and its outcome; past the timeout, with none finished, the jobs in
        flight are cancelled (evaluated again on resume) and the run stops."""
        if self.stop.out_of_time() and not self.executor.ready:
            self.executor.cancel()
            raise Stop("timeout")
        return self.executor.next_done()


class GenerationalLoop:
    """One ``optimizer.step`` per generation; whole generations are told and saved."""

    def __init__(self, parts: RunParts, generation: int):
        self.p, self.generation = parts, generation
        self._batch = 0
        self._unsaved: dict[str, Any] | None = None

    def run(self) -> str:
        p = self.p
        try:
            while True:
                reason = p.stop.before_generation(self.generation)
                if reason:
                    return reason
                self._batch = 0
                p.optimizer.step(self._evaluate)
                self.generation += 1
                # encoded now: the optimizer's next step may change what state_dict() refers to
                self._unsaved = ({"generation": self.generation, **p.saver.counts()},
                                 plain.encode(p.optimizer.state_dict()))
                if p.saver.due():
                    self._save()
        except Stop as stop:
            return stop.reason
        finally:
            self._save()  # only whole generations are saved: a cut one is replayed on resume

    def _save(self) -> None:
        if self._unsaved is not None:
            self.p.saver.save(*self._unsaved)
            self._unsaved = None

    def _evaluate(self, x: np.ndarray) -> np.ndarray:
        p, gen = self.p, self.generation + 1
        self._batch += 1
        x = np.atleast_2d(np.asarray(x, dtype=float))
        values = np.empty((len(x), p.objectives) if p.objectives > 1 else len(x))
        todo: list[tuple[int, Job]] = []
        for i, row in enumerate(x):
            job = p.job((gen, self._batch, i), row)
            told = p.stored_value(job)  # finished before a crash: its stored value, not a new evaluation
            if told is not None:
                values[i] = told
            else:
                todo.append((i, job))
        # Rounds: a candidate equal to a complete trial takes its value (runner.reuse_duplicates); of
        # equal candidates in this generation the first is evaluated, the others wait for its value
        # (and are evaluated in the next round only if it did not complete).
        while todo:
            jobs, waiting, keys = [], [], set()
            for i, job in todo:
                told = p.ledger.duplicate(job.record)
                if told is not None:
                    values[i] = told
                    continue
                key = p.ledger.dedup_key(job.record)
                if key is not None and key in keys:
                    waiting.append((i, job))
                    continue
                keys.add(key)
                jobs.append(job)
            converged = None if jobs else p.stop.converged()
            if converged:
                raise Stop(converged)
            jobs, cut = p.stop.cut(jobs)
            p.executor.submit(jobs, p.ledger.prune_context())
            while p.executor.in_flight:
                job, outcome = p.next_done()
                values[job.key[2]] = p.ledger.record(job, outcome, gen)
            if cut:  # the budget ends inside this generation: it is not told, and replayed on resume
                raise Stop("budget")
            todo = waiting
        return values


class AsyncLoop:
    """A new candidate whenever a worker is free; each result told as soon as it is back.

    Args:
        parts: what the loop works with.
        saved: the state saved by an earlier run (the optimizer has already loaded its part).
        population: the optimizer's population (for the nominal generation shown).
    """

    def __init__(self, parts: RunParts, saved: dict[str, Any] | None, population: int):
        self.p, self.population = parts, max(population, 1)
        self.asked = 0  # tickets handed out so far (a ticket numbers an ask across runs)
        self.flight: dict[int, tuple[int, dict]] = {}  # ticket -> (optimizer token, info)
        self._resubmit = self._restore(saved)

    @property
    def generation(self) -> int:
        return self.p.ledger.done // self.population

    def _restore(self, saved: dict[str, Any] | None) -> list[Job]:
        """Tell the stored results the optimizer is still waiting for; return the ones to evaluate again."""
        p = self.p
        stored = p.past.tickets()
        again: list[Job] = []
        if saved:
            self.asked = int(saved["asked"])
            pending = p.optimizer.pending()
            for ticket, token, info in saved["flight"]:
                job = p.job(("ask", ticket), pending[token], token, info)
                told = p.stored_value(job)
                if told is not None:
                    p.optimizer.tell(token, told)
                else:
                    self.flight[ticket] = (token, info)
                    again.append(job)
        for ticket, trial in sorted(stored.items()):  # finished after the saved state: learn from them
            if ticket >= self.asked:
                x = p.space.encode(p.space.from_record(trial.params, trial.user_attrs))
                p.optimizer.inject(x, p.past.told(trial), dict(trial.user_attrs))
        self.asked = max([self.asked] + [t + 1 for t in stored])
        return again

    def run(self) -> str:
        p = self.p
        try:
            p.executor.submit(p.stop.cut(self._resubmit)[0], p.ledger.prune_context())
            while True:
                stopped = self._refill()
                if p.executor.in_flight == 0:
                    return stopped or "budget"
                job, outcome = p.next_done()  # past the timeout: still pending in the saved state
                told = p.ledger.record(job, outcome, self.generation)
                del self.flight[job.key[1]]
                p.optimizer.tell(job.token, told)
                if p.saver.due():
                    self._save()
        except Stop as stop:
            return stop.reason
        finally:
            self._save()

    def _refill(self) -> str | None:
        """Ask until every slot is busy; the reason to stop asking, if any."""
        p = self.p
        while p.executor.in_flight < p.executor.slots:
            reason = p.stop.before_ask(p.executor.in_flight)
            if reason:
                return reason
            asked = p.optimizer.ask()
            if asked is None:  # e.g. every particle is in flight
                return None
            token, x, info = asked
            ticket, self.asked = self.asked, self.asked + 1
            job = p.job(("ask", ticket), x, token, info)
            told = p.ledger.duplicate(job.record)
            if told is not None:  # equal to a complete trial: told its value at once (runner.reuse_duplicates)
                p.optimizer.tell(token, told)
                converged = p.stop.converged()
                if converged:
                    return converged
                continue
            self.flight[ticket] = (token, info)
            p.executor.submit([job], p.ledger.prune_context())
        return None

    def _save(self) -> None:
        flight = [[ticket, token, info] for ticket, (token, info) in sorted(self.flight.items())]
        self.p.saver.save({"mode": "async", "generation": self.generation, "asked": self.asked, "flight": flight,
                           **self.p.saver.counts()},
                          plain.encode(self.p.optimizer.state_dict()))
