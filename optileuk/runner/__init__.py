"""The runner: one Optuna study, one optimizer, evaluated inline or on Dask workers, resumable.

The names below load on first use: a Dask worker imports ``optileuk.runner.cluster`` for its plugin
and the candidate task, and would otherwise import the whole driver (the study file's models,
SQLAlchemy, the loops) at start, 0.13 s of CPU per worker taken from the candidates
(docs/benchmarks.md, whole processes).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from optileuk.runner._common import RunFailed
    from optileuk.runner._executors import Executor, InlineExecutor, Job
    from optileuk.runner._ledger import Progress
    from optileuk.runner._outcome import Outcome, PruneContext, run_objective
    from optileuk.runner._runner import Runner, Summary

_WHERE = {"RunFailed": "_common", "Executor": "_executors", "InlineExecutor": "_executors", "Job": "_executors",
          "Progress": "_ledger", "Outcome": "_outcome", "PruneContext": "_outcome", "run_objective": "_outcome",
          "Runner": "_runner", "Summary": "_runner"}

__all__ = ["Executor", "InlineExecutor", "Job", "Outcome", "Progress", "PruneContext", "RunFailed", "Runner",
           "Summary", "run_objective"]


def __getattr__(name: str) -> Any:
    if name not in _WHERE:
        raise AttributeError(f"module 'optileuk.runner' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"optileuk.runner.{_WHERE[name]}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_WHERE])
