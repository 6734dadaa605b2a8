"""Executors evaluate candidates: inline in the driver's process, or on Dask workers.

Both implement :class:`Executor`: ``submit`` hands over jobs, ``next_done`` returns the next
finished one (in whatever order they finish), ``slots`` says how many run at once. The runner's
loops (generational and asynchronous) and its bookkeeping are the same for every executor.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Sequence

from optileuk.runner._outcome import Outcome, PruneContext, evaluate_candidate, run_objective_many


@dataclass
class Job:
    """One candidate to evaluate.

    Args:
        key: where it belongs in the run: ``(generation, batch, index)``, or ``("ask", ticket)``
            in asynchronous mode.
        config: the decoded configuration the objective receives.
        record: ``(params, distributions, user attrs)`` -- how it is stored on its trial.
        token: the optimizer's handle of the candidate (asynchronous mode).
        info: what the optimizer says about it (e.g. ``particle``), kept as user attrs.
    """

    key: tuple
    config: dict[str, Any]
    record: tuple
    token: Any = None
    info: dict[str, Any] = field(default_factory=dict)


class Executor(ABC):
    """Where candidates are evaluated."""

    @property
    @abstractmethod
    def slots(self) -> int:
        """How many candidates are evaluated at once."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Jobs submitted and not yet returned by :meth:`next_done`."""

    @abstractmethod
    def submit(self, jobs: Sequence[Job], prune: PruneContext | None = None) -> None:
        """Hand over jobs (the pruner context, if any, is the same for all of them)."""

    @abstractmethod
    def next_done(self) -> tuple[Job, Outcome]:
        """Block until a job is finished and return it with its outcome."""

    @property
    def ready(self) -> bool:
        """Whether a finished job is waiting to be returned (no blocking needed)."""
        return False

    @abstractmethod
    def cancel(self) -> None:
        """Forget every job in flight (the run is stopping; they are not stored)."""

    def start(self) -> "Executor":
        return self

    def close(self) -> None:
        """Release workers and connections."""

    def describe(self) -> str:
        return "inline"

    def __enter__(self) -> "Executor":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.close()


class InlineExecutor(Executor):
    """Evaluates candidates one after another in the driver's process.

    Work is done lazily in :meth:`next_done`, so the runner can stop between two candidates
    (timeouts). Jobs queued together without a pruner go through the objective's vectorised
    ``evaluate_many`` when it ``batches`` (e.g. batched KNN distances for a whole population).
    """

    def __init__(self, objective):
        self.objective = objective
        self._queue: deque[tuple[Job, PruneContext | None]] = deque()
        self._ready: deque[tuple[Job, Outcome]] = deque()

    @property
    def slots(self) -> int:
        return 1

    @property
    def in_flight(self) -> int:
        return len(self._queue) + len(self._ready)

    @property
    def ready(self) -> bool:
        return bool(self._ready)

    def submit(self, jobs: Sequence[Job], prune: PruneContext | None = None) -> None:
        self._queue.extend((job, prune) for job in jobs)

    def next_done(self) -> tuple[Job, Outcome]:
        if self._ready:
            return self._ready.popleft()
        if len(self._queue) > 1 and getattr(self.objective, "batches", False) and all(p is None for _, p in self._queue):
            jobs = [job for job, _ in self._queue]
            self._queue.clear()
            self._ready.extend(zip(jobs, run_objective_many(self.objective, [j.config for j in jobs])))
            return self._ready.popleft()
        job, prune = self._queue.popleft()
        return job, evaluate_candidate(self.objective, job.config, prune)

    def cancel(self) -> None:
        self._queue.clear()
        self._ready.clear()
