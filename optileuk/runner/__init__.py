"""The runner: one Optuna study, one optimizer, evaluated inline or on Dask workers, resumable."""

from optileuk.runner._common import RunFailed
from optileuk.runner._executors import Executor, InlineExecutor, Job
from optileuk.runner._ledger import Progress
from optileuk.runner._outcome import Outcome, PruneContext, run_objective
from optileuk.runner._runner import Runner, Summary

__all__ = ["Executor", "InlineExecutor", "Job", "Outcome", "Progress", "PruneContext", "RunFailed", "Runner",
           "Summary", "run_objective"]
