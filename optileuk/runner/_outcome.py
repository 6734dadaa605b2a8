"""Evaluating one candidate, wherever it runs (the driver's process or a Dask worker).

An :class:`Outcome` is what an evaluation reports: final state, value, user attrs, error text,
timing, intermediate values and the pruner's trial attrs. The evaluating process never writes to
the study's storage: the driver writes every finished trial, so a cluster needs no shared database.

Pruning works the same inline and on workers: the candidate's per-epoch reports go to a private
in-memory Optuna study holding a :class:`PruneContext` -- the study's finished trials (values,
intermediate values, the pruner's attrs) as they were when the candidate was handed out -- and
the study file's pruner decides there. Nothing is RUNNING in the storage while a candidate trains,
so a killed process never leaves an orphaned trial behind.
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
    value: float | tuple[float, ...] | None  # one value per objective in a multi-objective study
    attrs: dict[str, Any] = field(default_factory=dict)
    error: str | None = None
    seconds: float = 0.0
    start: datetime | None = None
    end: datetime | None = None
    intermediate: dict[int, float] = field(default_factory=dict)
    system_attrs: dict[str, Any] = field(default_factory=dict)  # what the pruner wrote on the trial


@dataclass(frozen=True)
class PruneContext:
    """What a pruner needs to judge one candidate, as plain data (sent to workers).

    Args:
        pruner: the study file's ``pruner`` section (``name`` + the Optuna pruner's arguments).
        study_name: the study's name (Hyperband assigns brackets by it).
        direction: ``minimize`` or ``maximize``.
        history: the study's finished trials, in trial-number order.
    """

    pruner: dict[str, Any]
    study_name: str
    direction: str
    history: tuple[FrozenTrial, ...]

    def live_trial(self) -> optuna.Trial:
        """A RUNNING trial in a private in-memory study that holds :attr:`history`."""
        from optileuk.config import PrunerConfig

        study = optuna.create_study(storage=optuna.storages.InMemoryStorage(), study_name=self.study_name,
                                    direction=self.direction, pruner=PrunerConfig.model_validate(self.pruner).build())
        study.add_trials(self.history)
        return optuna.Trial(study, study._storage.create_new_trial(study._study_id))


def history_entry(trial: FrozenTrial) -> FrozenTrial:
    """The part of a finished trial a pruner reads (no params, no user attrs)."""
    start = trial.datetime_start or trial.datetime_complete or datetime.now()  # a WAITING trial failed stale has none
    end = trial.datetime_complete or (start if trial.state.is_finished() else None)
    return FrozenTrial(number=trial.number, state=trial.state, value=trial.value, datetime_start=start,
                       datetime_complete=end, params={}, distributions={}, user_attrs={},
                       system_attrs=dict(trial.system_attrs), intermediate_values=dict(trial.intermediate_values),
                       trial_id=-1)


def evaluate_candidate(objective, config: Mapping[str, Any], prune: PruneContext | None = None) -> Outcome:
    """Evaluate one config (with a live trial for the pruner when ``prune`` is given)."""
    if prune is None:
        return run_objective(objective, config)
    trial = prune.live_trial()
    outcome = run_objective(objective, config, trial=trial)
    frozen = trial.study._storage.get_trial(trial._trial_id)
    outcome.intermediate = dict(frozen.intermediate_values)
    outcome.system_attrs = dict(frozen.system_attrs)
    outcome.attrs = {**frozen.user_attrs, **outcome.attrs}
    return outcome


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
            _free_gpu_memory()
        return _fail(text, start, t0, detail=traceback.format_exc(limit=3))
    seconds = time.perf_counter() - t0
    return _complete(objective, score, start, datetime.now(), seconds)


def _values(objective, score):
    """The value(s) to optimize, or the reason there are none (``None``, NaN, a value not reported)."""
    try:
        value = objective.values_of(score) if hasattr(objective, "values_of") else score.value
    except ValueError as exc:
        return None, f"objective: {exc}"
    many = isinstance(value, (tuple, list))
    vals = list(value) if many else [value]
    if any(v is None or not math.isfinite(float(v)) for v in vals):
        return None, f"objective returned {value!r}"
    return (tuple(float(v) for v in vals) if many else float(value)), None


def _complete(objective, score, start: datetime, end: datetime, seconds: float) -> Outcome:
    value, error = _values(objective, score)
    sizes = getattr(objective, "split_sizes", None)  # what the score's split held (also on Dask workers)
    attrs = {**({"split_sizes": sizes} if sizes else {}), **score.attrs}
    if error is not None:
        return Outcome(TrialState.FAIL, None, attrs, error[:1000], seconds, start, end)
    return Outcome(TrialState.COMPLETE, value, attrs, None, seconds, start, end)


def _free_gpu_memory() -> None:
    """After a CUDA out-of-memory error, give the cached blocks back so the next candidate fits."""
    import sys

    torch = sys.modules.get("torch")  # never import torch just for this
    if torch is not None and torch.cuda.is_available():
        torch.cuda.empty_cache()


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
    return [_complete(objective, score, start, end, each) for score in scores]
