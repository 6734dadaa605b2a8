"""The runner: one Optuna study, one optimizer, evaluated inline or on Dask workers, resumable."""

from optileuk.runner._common import STATE_KEY, STUDY_ATTR, RunFailed
from optileuk.runner._executors import Executor, InlineExecutor, Job
from optileuk.runner._ledger import Progress
from optileuk.runner._outcome import Outcome, PruneContext
from optileuk.runner._records import TrialWriter
from optileuk.runner._runner import Runner, Summary

__all__ = ["Executor", "InlineExecutor", "Job", "Outcome", "Progress", "PruneContext", "RunFailed", "Runner",
           "STATE_KEY", "STUDY_ATTR", "Summary", "TrialWriter"]
