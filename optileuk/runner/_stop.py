"""Why a run stops: the rules the loops and :meth:`Runner.run` ask, in one place."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from optileuk.runner._ledger import Ledger


class Stop(Exception):
    """The run stops in the middle of a generation (``reason``: budget, timeout or converged)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


@dataclass
class StopRules:
    """The study's budget (trials, generations, timeout) and convergence, asked by every loop.

    Args:
        budget: the study file's ``budget`` (:class:`optileuk.config.Budget`).
        ledger: counts of what the run (and the runs before it) did.
        deadline: ``perf_counter`` time at which the timeout stops the run (``None``: no timeout).
        population: candidates per nominal generation (``budget.generations`` in async mode).
    """

    budget: Any
    ledger: Ledger
    deadline: float | None = None
    population: int = 1

    def out_of_time(self) -> bool:
        return self.deadline is not None and time.perf_counter() >= self.deadline

    def complete(self, generation: int, resumed: bool) -> bool:
        """The study already holds its budget (a finished run run again): nothing to do."""
        b = self.budget
        return ((b.trials is not None and self.ledger.done >= b.trials)
                or (b.generations is not None and resumed and generation >= b.generations))

    def before_generation(self, generation: int) -> str | None:
        """Why the generational loop must not start generation ``generation + 1``, if it must not."""
        if self.budget.generations is not None and generation >= self.budget.generations:
            return "budget"
        if self.ledger.room() == 0:
            return "budget"
        return "timeout" if self.out_of_time() else None

    def before_ask(self, in_flight: int) -> str | None:
        """Why the asynchronous loop must not ask one more candidate (``in_flight`` being evaluated)."""
        room = self.ledger.room()
        if room is not None and room <= in_flight:
            return "budget"
        limit = self.budget.generations
        if limit is not None and self.ledger.done + in_flight >= limit * self.population:
            return "budget"
        return "timeout" if self.out_of_time() else None

    def converged(self) -> str | None:
        """The reason to stop when the last candidates all equalled complete trials (``runner.reuse_duplicates``)."""
        if not self.ledger.converged():
            return None
        return f"converged (every candidate of the last {self.ledger.CONVERGED_AFTER} equalled a complete trial)"

    def cut(self, jobs: list) -> tuple[list, bool]:
        """The jobs the trial budget leaves room for, and whether it cut any."""
        room = self.ledger.room()
        if room is not None and len(jobs) > room:
            return jobs[:room], True
        return jobs, False
