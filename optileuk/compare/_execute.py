"""Run the studies of a comparison: whole runs side by side in ``jobs`` processes.

Each process keeps one prepared objective per (objective, data seed, search space) and hands it
to every run it executes, so the dataset is loaded once per process and an objective's caches
(e.g. the segmentation objective's clusterings) serve every optimizer. Runs resume like
``optileuk run``: a finished run is only read back, a half-finished one goes on.
"""

from __future__ import annotations

import json
import multiprocessing
import os
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any, Callable

from optuna.trial import TrialState

FINISHED = (TrialState.COMPLETE, TrialState.PRUNED, TrialState.FAIL)

from optileuk.compare._plan import Plan, Reference, Run, reference_name
from optileuk.errors import ConfigError, OptileukError, Problem
from optileuk.storage import FINGERPRINT_KEY, STUDY_ATTR, TrialWriter, open_storage, redact, study_counts

_OBJECTIVES: dict[str, Any] = {}  # per process: prepared objectives shared by its runs


@dataclass
class RunResult:
    name: str
    label: str
    seed: int
    best_value: float | None = None
    trials: int = 0
    seconds: float = 0.0
    error: str | None = None


def _objective_for(study) -> Any:
    key = json.dumps([study.objective_type, study.objective_config.model_dump(mode="json"), study.objective_seed,
                      study.space.to_dict()], sort_keys=True, default=str)
    if key not in _OBJECTIVES:
        objective = study.objective()
        objective.prepare()
        _OBJECTIVES[key] = objective
    return _OBJECTIVES[key]


def _shared_objective(study) -> Any:
    """The process's prepared objective for inline runs; runs on Dask workers build their own."""
    return None if study.file.runner.distributed else _objective_for(study)


def _limit_threads(threads: int) -> None:
    """Pool initializer: share the cores between the runs instead of each run taking all of them."""
    import torch
    from threadpoolctl import threadpool_limits

    threadpool_limits(threads)  # OpenMP/BLAS (scikit-learn's k-means, numpy)
    torch.set_num_threads(threads)


def run_threads(jobs: int, threads: int | None = None) -> int:
    """Threads (BLAS/OpenMP/torch) of each run's process when ``jobs`` run side by side: the CPU
    cores shared out; 0 = no limit. One process alone (``jobs`` 1) is not limited."""
    if jobs <= 1:
        return 0
    return max(1, (os.cpu_count() or 1) // jobs) if threads is None else threads


@contextmanager
def _threads(threads: int):
    """Within the block, at most ``threads`` BLAS/OpenMP/torch threads (0: unchanged)."""
    if not threads:
        yield
        return
    import torch
    from threadpoolctl import threadpool_limits

    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        with threadpool_limits(threads):
            yield
    finally:
        torch.set_num_threads(before)


def run_one(run: Run) -> RunResult:
    """Run (or resume) one run of the comparison in this process."""
    from optileuk.runner import Runner

    study = run.study()
    try:
        summary = Runner(study, objective=_shared_objective(study), rebuild_state=run.rebuild_state).run()
    except OptileukError as exc:  # a run that keeps failing stops; the others go on
        return RunResult(run.name, run.label, run.seed, error=str(exc))
    return RunResult(run.name, run.label, run.seed, summary.best_value, summary.trials, summary.seconds)


def prepare(plan: Plan) -> None:
    """Everything that can fail on a user's input, before any trial: data, devices, storage, names.

    Creates every run's study (so the dashboard lists them from the start) with the shared
    objective; a study of the same name made with other settings is refused here.
    """
    from optileuk.runner import Runner

    storage = open_storage(plan.storage)
    for run in plan.runs:
        study = run.study()
        Runner(study, storage=storage, objective=_shared_objective(study), rebuild_state=run.rebuild_state).prepare()


@dataclass
class ReferenceResult:
    label: str
    name: str
    value: float | None
    seconds: float
    error: str | None = None
    stored_before: bool = False


REFERENCE_ATTR = "optileuk.reference"  # study user attr of a reference: label, params, note


def _reference_fingerprint(study, ref: Reference, files: bool = True) -> str:
    """What a stored reference was scored with; ``files``: with the contents of the files the objective
    names (a trunk), as :func:`optileuk.runner.fingerprint` (``False``: as references were stored before)."""
    import hashlib

    parts = [study.objective_type, study.objective_config.model_dump(mode="json"), study.objective_seed,
             study.direction, ref.params]
    digests = getattr(study.objective_config, "file_digests", dict)() if files else {}
    if digests:
        parts.append(digests)
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _stored_reference(storage, plan: Plan, ref: Reference) -> int | None:
    """The id of the reference's study when it is stored (``None``: not yet); a study of that name
    scored with other parameters, objective or data seed is refused, like a run's."""
    first, name = plan.first(), reference_name(plan.base, ref.label)
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return None
    stored = storage.get_study_system_attrs(study_id).get(FINGERPRINT_KEY)
    if stored not in (_reference_fingerprint(first, ref), _reference_fingerprint(first, ref, files=False)):
        raise ConfigError([Problem(str(first.path), "references", f"study '{name}' in {redact(plan.storage)} "
                           "was scored with other parameters, objective, data seed or trunk file; give the "
                           "reference another label or delete the old study", ref.label)])
    return study_id


def check_references(plan: Plan) -> None:
    """Refuse, before anything is written, references whose stored studies do not match the plan."""
    if plan.references:
        storage = open_storage(plan.storage)
        for ref in plan.references:
            _stored_reference(storage, plan, ref)


def score_references(plan: Plan, threads: int = 0) -> list[ReferenceResult]:
    """Score each of the plan's references once with the comparison's objective (in this process) and
    store it as one trial of the study ``<base>.<label>.ref``. A reference already scored with the same
    objective, data seed and parameters is read back; one scored with others is refused, like a run.

    ``threads``: score with the runs' thread count (:func:`run_threads`). Training on a CPU sums in
    an order that depends on the number of threads, so a network trained with 1 thread and one
    trained with 2 differ; a reference must be trained like the runs' candidates to compare with them."""
    import optuna

    from optileuk.runner import run_objective

    if not plan.references:
        return []
    first = plan.first()
    storage = open_storage(plan.storage)
    objective = _objective_for(first)
    out = []
    for ref in plan.references:
        name = reference_name(plan.base, ref.label)
        study_id = _stored_reference(storage, plan, ref)
        if study_id is not None:
            now = _reference_fingerprint(first, ref)
            if storage.get_study_system_attrs(study_id).get(FINGERPRINT_KEY) != now:
                # stored before fingerprints held file contents: from now on, they do
                storage.set_study_system_attr(study_id, FINGERPRINT_KEY, now)
            done = [t for t in storage.get_all_trials(study_id, deepcopy=False) if t.state == TrialState.COMPLETE]
            if done:
                out.append(ReferenceResult(ref.label, name, done[-1].value, float(done[-1].user_attrs.get("seconds", 0)),
                                           stored_before=True))
                continue
            study = optuna.load_study(study_name=name, storage=storage)
        else:
            study = optuna.create_study(study_name=name, storage=storage, direction=first.direction)
            storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, _reference_fingerprint(first, ref))
            study.set_user_attr(STUDY_ATTR, first.raw())
            study.set_user_attr(REFERENCE_ATTR, {"label": ref.label, "params": ref.params, "note": ref.note})
        with _threads(threads):
            import torch

            used = torch.get_num_threads()
            outcome = run_objective(objective, ref.params)
        attrs = {"reference": ref.label, "params": ref.params, "torch_threads": used, "seconds": round(outcome.seconds, 6), **outcome.attrs}
        if outcome.error:
            attrs["error"] = outcome.error
        done = outcome.state == TrialState.COMPLETE
        writer = TrialWriter(storage, study._study_id)  # the runs' writer: the same path into the tables
        writer.add(optuna.trial.create_trial(state=outcome.state if outcome.state != TrialState.PRUNED else TrialState.FAIL,
                                             value=outcome.value if done else None, user_attrs=attrs))
        writer.flush()
        out.append(ReferenceResult(ref.label, name, outcome.value if done else None, outcome.seconds,
                                   None if done else outcome.error))
    return out


class _Counter:
    """Finished trials of the comparison, for the progress bar: one grouped count per poll
    (:func:`optileuk.storage.study_counts`), no trial is read."""

    def __init__(self, plan: Plan):
        self.storage = open_storage(plan.storage)
        self.names = [run.name for run in plan.runs]
        self.ids: dict[str, int] = {}

    def update(self, names=()) -> int:
        if any(n not in self.ids for n in self.names):
            self.ids = {fs.study_name: fs._study_id for fs in self.storage.get_all_studies()}
        ids, counts = self.ids, study_counts(self.storage)
        return sum(counts[ids[n]].n(*FINISHED) for n in self.names if n in ids and ids[n] in counts)


def execute(plan: Plan, *, jobs: int, on_poll: Callable[[int], None] | None = None,
            on_done: Callable[[RunResult], None] | None = None, poll_seconds: float = 2.0,
            threads: int | None = None) -> list[RunResult]:
    """Run every run of ``plan``; ``on_poll(finished trials)`` is called every ``poll_seconds``.

    ``threads``: BLAS/OpenMP/torch threads per process when ``jobs > 1`` (default: the CPU cores
    shared out between the jobs; 0 = no limit, every process takes every core).
    """
    results: list[RunResult] = []
    counter = _Counter(plan) if on_poll else None
    if jobs <= 1:
        for run in plan.runs:
            results.append(run_one(run))
            if counter:
                on_poll(counter.update([run.name]))
            if on_done:
                on_done(results[-1])
        return results
    ctx = multiprocessing.get_context("spawn")  # no forked torch/OpenMP state, same on every OS
    threads = run_threads(jobs, threads)
    init = dict(initializer=_limit_threads, initargs=(threads,)) if threads else {}
    with ProcessPoolExecutor(max_workers=jobs, mp_context=ctx, **init) as pool:
        pending: dict[Future, Run] = {pool.submit(run_one, run): run for run in plan.runs}
        try:
            while pending:
                done, _ = wait(pending, timeout=poll_seconds, return_when=FIRST_COMPLETED)
                for fut in done:
                    run = pending.pop(fut)
                    try:
                        res = fut.result()
                    except Exception as exc:  # a crashed process: the run is reported, finished trials stay stored
                        res = RunResult(run.name, run.label, run.seed, error=f"{type(exc).__name__}: {exc}")
                    results.append(res)
                    if on_done:
                        on_done(res)
                if counter:
                    on_poll(counter.update([pending[f].name for f in pending if f.running()]
                                           + [r.name for r in results[len(results) - len(done):]]))
        except BaseException:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    return results
