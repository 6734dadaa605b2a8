"""Fair comparisons: the same objective, data split, space and budget for every optimizer, over seeds."""

from optileuk.compare._execute import REFERENCE_ATTR, ReferenceResult, RunResult, check_references, execute, prepare, run_one, run_threads, score_references
from optileuk.compare._plan import (NAME, REF_NAME, Plan, Reference, Run, default_label, parse_references,
                                    plan_comparison, run_name)

__all__ = ["NAME", "REFERENCE_ATTR", "REF_NAME", "Plan", "Reference", "ReferenceResult", "Run", "RunResult",
           "check_references", "default_label", "execute", "parse_references", "plan_comparison", "prepare", "run_name", "run_one", "run_threads", "score_references"]
