"""The runner: one Optuna study, one optimizer, generation by generation, resumable."""

from optileuk.runner._executor import InlineExecutor, Outcome
from optileuk.runner._records import TrialWriter
from optileuk.runner._runner import STATE_KEY, STUDY_ATTR, Progress, RunFailed, Runner, Summary

__all__ = ["InlineExecutor", "Outcome", "Progress", "RunFailed", "Runner", "STATE_KEY", "STUDY_ATTR",
           "Summary", "TrialWriter"]
