"""Executors evaluate candidates; the inline one does it in this process.

An :class:`Outcome` is what any executor reports for one candidate: final state, value,
user attrs, error text, timing and intermediate values.
"""

from __future__ import annotations

import math
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Mapping

import optuna
from optuna.trial import FrozenTrial, TrialState

from optileuk.errors import OptileukError


@dataclass
class Outcome:
    state: TrialState
    value: float | None
    attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    start: datetime | None = None
    end: datetime | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    trial_id: int | None = None  # set when the trial already lives in the storage (live evaluation)


def run_objective(objective, config: Mapping[str, Any], trial=None) -> Outcome:
    """Evaluate one config; any failure becomes a FAIL outcome with its reason (never a silent inf).

    A user error raised by the objective (bad config value, missing data) is not a candidate's
    failure: it is re-raised so the run stops with the project's message.
    """
    start, t0 = datetime.now(), time.perf_counter()
    try:
        score = objective.evaluate(config, trial=trial)
    except OptileukError:
        raise
    except optuna.TrialPruned as exc:
        steps = trial.study._storage.get_trial(trial._trial_id).intermediate_values if isinstance(trial, optuna.Trial) else {}
        last = steps[max(steps)] if steps else None
        return Outcome(TrialState.PRUNED, last, {"pruned_at_step": max(steps) if steps else None}, str(exc) or "pruned",
                       time.perf_counter() - t0, start, datetime.now(), dict(steps))
    except MemoryError as exc:
        return _fail(f"MemoryError: {exc}", start, t0)
    except Exception as exc:  # a candidate that blows up is recorded, the run goes on
        text = f"{type(exc).__name__}: {exc}"
        if "out of memory" in str(exc).lower():
            text = f"out of memory: {exc}"
        return _fail(text, start, t0, detail=traceback.format_exc(limit=3))
    value = score.value
    seconds = time.perf_counter() - t0
    if isinstance(value, (tuple, list)):
        raise NotImplementedError("multi-objective values are not supported by the runner yet")
    if value is None or not math.isfinite(float(value)):
        return _fail(f"objective returned {value!r}", start, t0, attrs=score.attrs)
    return Outcome(TrialState.COMPLETE, float(value), dict(score.attrs), None, seconds, start, datetime.now())


def _fail(text: str, start: datetime, t0: float, *, detail: str | None = None, attrs=None) -> Outcome:
    attrs = dict(attrs or {})
    if detail:
        attrs["traceback"] = detail[-2000:]
    return Outcome(TrialState.FAIL, None, attrs, text[:1000], time.perf_counter() - t0, start, datetime.now())


def run_objective_many(objective, configs: list[Mapping[str, Any]]) -> list[Outcome]:
    """Evaluate a population in one call of ``objective.evaluate_many``; if that call fails, each
    candidate is evaluated alone so every failure is attributed to its own candidate."""
    start, t0 = datetime.now(), time.perf_counter()
    try:
        scores = objective.evaluate_many(configs)
    except OptileukError:
        raise
    except Exception:
        return [run_objective(objective, c) for c in configs]
    end, each = datetime.now(), (time.perf_counter() - t0) / max(len(configs), 1)
    out = []
    for score in scores:
        v = score.value
        if v is None or not math.isfinite(float(v)):
            out.append(Outcome(TrialState.FAIL, None, dict(score.attrs), f"objective returned {v!r}", each, start, end))
        else:
            out.append(Outcome(TrialState.COMPLETE, float(v), dict(score.attrs), None, each, start, end))
    return out


class InlineExecutor:
    """Evaluates candidates one after another in the calling process."""

    def __init__(self, objective):
        self.objective = objective

    def evaluate(self, config: Mapping[str, Any]) -> Outcome:
        return run_objective(self.objective, config)

    def evaluate_many(self, configs: list[Mapping[str, Any]]) -> list[Outcome]:
        return run_objective_many(self.objective, configs)

    def evaluate_live(self, study: optuna.Study, config: Mapping[str, Any], template: FrozenTrial) -> Outcome:
        """Evaluate with a real trial in the storage (RUNNING while it trains), so the objective's
        per-epoch reports reach the study's pruner; the runner then finishes the trial."""
        trial_id = study._storage.create_new_trial(study._study_id, template_trial=template)
        outcome = run_objective(self.objective, config, trial=optuna.Trial(study, trial_id))
        outcome.trial_id = trial_id
        return outcome
