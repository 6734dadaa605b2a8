"""Fair comparisons: the same objective, data split, space and budget for every optimizer, over seeds."""

from optileuk.compare._execute import RunResult, execute, prepare, run_one
from optileuk.compare._plan import NAME, Plan, Run, default_label, plan_comparison, run_name

__all__ = ["NAME", "Plan", "Run", "RunResult", "default_label", "execute", "plan_comparison", "prepare",
           "run_name", "run_one"]
