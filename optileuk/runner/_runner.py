"""The runner: owns one Optuna study and drives one optimizer over one executor.

For every candidate the optimizer proposes it decodes the point, evaluates it (inline or on Dask
workers), records it as an Optuna trial (params with proper distributions, user attrs
``optimizer``, ``generation``/``batch``/``index`` -- or ``ask`` in asynchronous mode --,
``seconds``, ``worker``) and tells the optimizer its value, oriented so the optimizer always
minimises. The optimizer's state is saved in the study's system attrs; a re-run loads it and
goes on, taking the values of trials that already finished instead of evaluating them again.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import optuna
from optuna.storages import BaseStorage

from optileuk import plain
from optileuk.plain import jsonable
from optileuk.config import Study
from optileuk.errors import ConfigError, Problem, StorageError
from optileuk.folds import OOF
from optileuk.runner._executors import Executor, InlineExecutor
from optileuk.runner._extras import RaceRun, anchor_stored, run_anchor
from optileuk.runner._lease import Lease
from optileuk.runner._ledger import Ledger, Progress
from optileuk.runner._loops import AsyncLoop, GenerationalLoop, RunParts, StateSaver
from optileuk.runner._past import Duplicates, Past
from optileuk.runner._stop import StopRules
from optileuk.runner._trials import config_for_display, fingerprint, unpack_state
from optileuk.selection import Chooser, needs
from optileuk.storage import (DEFAULTS_ATTR, FINGERPRINT_KEY, MASKS_ATTR, STATE_KEY, STUDY_ATTR, TrialWriter,
                              best_trials, open_storage, pareto_front, redact)

__all__ = ["Progress", "Runner", "Summary"]


@dataclass
class Summary:
    study_name: str
    storage: str
    trials: int
    evaluated: int
    reused: int
    duplicates: int
    failed: int
    pruned: int
    best_value: float | None
    best_params: dict[str, Any]
    seconds: float
    generation: int
    stopped_by: str
    executor: str = "inline"
    extra: dict[str, Any] = field(default_factory=dict)


class _Work:
    """The executor, started when the first candidate needs it (a finished study starts no workers)."""

    def __init__(self, make: Callable[[], Executor], on_open: Callable[[str], None] | None):
        self._make, self._on_open, self._executor = make, on_open, None

    @property
    def opened(self) -> bool:
        return self._executor is not None

    @property
    def executor(self) -> Executor:
        if self._executor is None:
            self._executor = self._make().start()
            if self._on_open:
                self._on_open(self._executor.describe())
        return self._executor

    def describe(self) -> str:
        return self.executor.describe()

    def __enter__(self) -> "_Work":
        return self

    def __exit__(self, *exc) -> None:
        if self._executor is not None:
            self._executor.close()


class Runner:
    """Run one study to its budget (or resume it).

    Args:
        study: a validated study (:func:`optileuk.config.load_study`).
        storage: an opened storage; default: the study file's ``storage`` URL.
        on_progress: called after every finished trial with a :class:`Progress`.
        state_every: seconds between two saves of the optimizer state (always saved at the end).
        objective: an objective to use instead of a fresh one (it must match the study's; optileuk
            compare shares one, with its caches, across the runs of one process).
        rebuild_state: do not read the optimizer state saved in the study (one an older optileuk
            saved as a pickle, which is never loaded); rebuild it by replaying the stored trials.

    Example:
        >>> from optileuk.config import load_study  # doctest: +SKIP
        >>> Runner(load_study("studies/rastrigin_pso.yaml")).run().best_value  # doctest: +SKIP
    """

    def __init__(self, study: Study, *, storage: BaseStorage | None = None,
                 on_progress: Callable[[Progress], None] | None = None, state_every: float = 2.0,
                 objective: Any = None, rebuild_state: bool = False):
        self.study = study
        self._objective = objective
        self.storage_url = study.file.storage
        self._storage = storage
        self.on_progress = on_progress
        self.on_executor: Callable[[str], None] | None = None  # told where candidates are evaluated
        self.state_every = state_every
        self.rebuild_state = rebuild_state
        self._prepared: tuple | None = None
        self._inputs: dict[str, Any] = {}  # what the study reads (files, images): part of its fingerprint

    def prepare(self) -> "Runner":
        """Build the objective, bind the space and open the storage and study (no trial runs).

        Everything that can fail on a user's input fails here, before any progress is shown.
        With Dask workers the driver's own copy of the objective stays on the CPU: it only
        checks the data and binds the search space; the workers train on their devices.
        """
        if self._prepared is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            st = self.study
            cpu = self._driver_config()
            objective = self._objective or (st.objective(cpu) if cpu is not None else st.objective())
            r = st.file.runner
            if r.scheduler:  # reachable, before anything is written
                from optileuk.runner.cluster import connect

                connect(r.scheduler, str(st.path)).close()
            elif r.distributed:
                from optileuk.runner.cluster import check_slots, device_slots

                check_slots(device_slots(r.devices, r.trials_per_device, r.workers), str(st.path))
            objective.prepare()
            space = objective.bind(st.space)
            self._inputs = objective.inputs()
            self._defaults = objective.default_params()
            if needs(st.file.selection)["anchor"] and self._defaults is None:
                raise ConfigError([Problem(str(st.path), "selection", f"anchored compares the search with the "
                                           f"objective's defaults; the {st.objective_type} objective has none "
                                           "(analytic: give objective.defaults)", "anchored")])
            storage = self._storage or open_storage(self.storage_url)
            ostudy = self._open_study(storage, space)
            self._read_state(storage, ostudy)  # refused here, before anything runs
            self._lease(storage, ostudy).refuse_if_held()
            self._prepared = (objective, space, storage, ostudy)
        return self

    def _lease(self, storage, ostudy) -> Lease:
        return Lease(storage, ostudy._study_id, self.study.name, redact(self.storage_url), str(self.study.path))

    def _read_state(self, storage, ostudy) -> tuple[dict, dict] | None:
        """The run state saved in the study; an older optileuk's pickle (or anything that is not
        this version's data) is refused, never loaded -- unless it is to be rebuilt from the trials."""
        saved = storage.get_study_system_attrs(ostudy._study_id).get(STATE_KEY)
        if saved is None or self.rebuild_state:
            return None
        try:
            return unpack_state(saved)
        except plain.NotData as exc:
            raise StorageError(
                f"{self.study.path}: study '{self.study.name}' in {redact(self.storage_url)} holds an optimizer state this "
                f"optileuk does not read ({exc}: saved as a pickle by an older optileuk, or not written by "
                "optileuk). Pickles are never loaded: they can run code. To go on, run the same command with "
                "--rebuild-state: the optimizer is rebuilt by replaying the study's stored trials (none is "
                "evaluated again)") from None

    def _driver_config(self):
        """The objective config for the driver's own copy when workers train (on the CPU), else ``None``."""
        cfg = self.study.objective_config
        if self.study.file.runner.distributed and "device" in type(cfg).model_fields:
            return cfg.model_copy(update={"device": "cpu"})
        return None

    # ------------------------------------------------------------------------------------------
    def run(self) -> Summary:
        st = self.study
        objective, space, storage, ostudy = self.prepare()._prepared
        population = getattr(st.optimizer_config, "population", None) or 1  # every built-in config has one
        opt, run_state = self._optimizer(space, storage, ostudy, population)
        lease = self._lease(storage, ostudy).acquire()
        writer = TrialWriter(storage, ostudy._study_id, flush_seconds=st.file.runner.flush_seconds)
        wants = needs(st.file.selection)
        options = {OOF: True} if wants["oof"] else {}
        t0 = time.perf_counter()
        try:
            ledger, stop, generation = self._bookkeeping(objective, space, storage, ostudy, writer, run_state,
                                                         population, t0)
            complete = stop.complete(generation, resumed=run_state is not None)
            with _Work(lambda: self._executor(objective, space), self.on_executor) as work:
                if wants["anchor"] and not anchor_stored(storage, ostudy._study_id):
                    run_anchor(work.executor, ledger, objective.default_params(), options)
                if complete:  # nothing to search: the summary says so
                    stopped_by = "budget (already complete)"
                    if st.file.runner.mode == "async":
                        generation = ledger.done // population
                else:
                    saver = StateSaver(storage, ostudy._study_id, writer, self.state_every, ledger, self._past.stored,
                                       lease)
                    parts = RunParts(space, opt, work.executor, ledger, self._past, saver, stop, len(st.directions),
                                     options)
                    loop = AsyncLoop(parts, run_state, population) if st.file.runner.mode == "async" else \
                        GenerationalLoop(parts, generation)
                    stopped_by = loop.run()
                    generation = loop.generation
                raced = None
                if wants["race"] is not None and stopped_by != "timeout":
                    writer.flush()
                    raced = self._race(objective, storage, ostudy, ledger, wants["race"]).run(work, options)
                where = work.describe() if work.opened else "nothing (already complete)"
        finally:
            try:
                writer.flush()
            finally:
                lease.release()
        summary = self._summary(storage, ostudy, space, ledger, generation, stopped_by, where, time.perf_counter() - t0)
        summary.extra["already_complete"] = complete and not work.opened
        if raced is not None:
            summary.extra["race"] = {"rounds": raced.rounds, "spent": raced.spent, "stopped_by": raced.stopped_by}
        return summary

    def _bookkeeping(self, objective, space, storage, ostudy, writer, run_state, population: int, t0: float):
        """(ledger, stop rules, generation) of this run, carried on from the stored trials and state."""
        st = self.study
        budget = st.file.budget
        signs = [1.0 if d == "minimize" else -1.0 for d in st.directions]
        sign = np.array(signs) if st.multi else signs[0]
        pruner = st.file.pruner
        reuse = st.file.runner.reuse_duplicates
        if reuse == "auto":  # equal candidates need a deterministic objective and a space not all floats
            reuse = bool(getattr(objective, "deterministic", False)) and any(
                p.type != "float" for p in space.params.values())
        # a pruner compares with every earlier trial, reuse looks for equal ones: both read them all
        past = self._past = Past(storage, ostudy._study_id, sign, run_state, full=pruner is not None or reuse)
        ledger = Ledger(past, writer, optimizer=st.optimizer_name, sign=sign, budget=budget.trials,
                        max_consecutive=st.file.runner.max_consecutive_failures, source=str(st.path),
                        prune=(pruner.model_dump(), st.name, st.direction) if pruner else None,
                        on_progress=self.on_progress, duplicates=Duplicates(space, past) if reuse else None)
        generation = int(run_state.get("generation", 0)) if run_state else 0
        stop = StopRules(budget, ledger, None if budget.timeout is None else t0 + budget.timeout, max(population, 1))
        return ledger, stop, generation

    def _race(self, objective, storage, ostudy, ledger: Ledger, rule) -> RaceRun:
        st = self.study
        first = objective.prepared.splits.repeats if objective.prepared is not None else \
            int(getattr(objective.config, "repeats", 1))
        return RaceRun(storage, ostudy._study_id, st.name, st.direction, self._chooser(storage, ostudy), rule, first,
                       ledger.done)

    def _chooser(self, storage, ostudy) -> Chooser:
        space = self._prepared[1] if self._prepared else None
        return Chooser(storage, ostudy._study_id, self.study.name, maximize=self.study.direction == "maximize",
                       space=space, defaults=ostudy.user_attrs.get(DEFAULTS_ATTR))

    def _optimizer(self, space, storage, ostudy, population: int) -> tuple[Any, dict | None]:
        """The study's optimizer with the state saved in the study loaded, and the run's saved position."""
        st, budget = self.study, self.study.file.budget
        hint = budget.generations or (-(-budget.trials // population) if budget.trials else None)
        opt = st.optimizer.build(space.box, st.optimizer_config, seed=st.file.seed, max_generations=hint,
                                 objectives=len(st.directions))
        run_state, opt_state = self._read_state(storage, ostudy) or (None, None)  # as it is now
        if opt_state is not None:
            try:
                opt.load_state_dict(opt_state)
            except Exception as exc:  # data, but not this optimizer's state (edited, or damaged)
                raise StorageError(
                    f"{st.path}: study '{st.name}' in {redact(self.storage_url)} holds an optimizer state that does not fit "
                    f"{st.optimizer_name} ({type(exc).__name__}: {exc}). To go on, run the same command with "
                    "--rebuild-state: the optimizer is rebuilt by replaying the study's stored trials (none is "
                    "evaluated again)") from None
        return opt, run_state

    def _executor(self, objective, space) -> Executor:
        r = self.study.file.runner
        if not r.distributed:
            return InlineExecutor(objective)
        from optileuk.runner.cluster import DaskExecutor, ObjectiveSpec, device_slots

        st = self.study
        spec = ObjectiveSpec(st.objective_cls, st.objective_config, st.space, st.objective_seed, st.file.objectives)
        slots = [] if r.scheduler else device_slots(r.devices, r.trials_per_device, r.workers)
        name = f"optileuk-{st.name}-{fingerprint(st, space, self._inputs)}"
        return DaskExecutor(spec, name, slots=slots, scheduler=r.scheduler, listen=r.listen, source=str(st.path))

    def _summary(self, storage, ostudy, space, ledger: Ledger, generation: int, stopped_by: str, where: str,
                 seconds: float) -> Summary:
        st = self.study
        extra: dict[str, Any] = {}
        best, front = None, []
        if st.multi:
            front = pareto_front(storage, ostudy._study_id, st.directions)
            extra["objectives"] = list(st.file.objectives)
            extra["front"] = [{"trial": t.number, "values": list(t.values)} for t in front]
        elif best_trials(storage, ostudy._study_id, 1, maximize=st.direction == "maximize"):
            best = self._selected(storage, ostudy, extra)
        shown = best if best is not None else (front[0] if front else None)
        if shown is not None and shown.user_attrs.get("split_sizes"):
            extra["split_sizes"] = shown.user_attrs["split_sizes"]
        cls = st.objective_cls
        extra["conditional"] = bool(getattr(space, "conditional", False))
        extra["value_is"] = cls.value_meaning(st.objective_config) if hasattr(cls, "value_meaning") else ""
        if best is not None:  # the chosen trial's other recorded metrics, and the split they come from
            attrs = best.user_attrs
            extra["metrics"] = {m: attrs[m] for m in getattr(cls, "METRICS", ()) if isinstance(attrs.get(m), (int, float))}
            extra["value_split"] = attrs.get("split")
        return Summary(
            study_name=st.name, storage=redact(self.storage_url), trials=ledger.done, evaluated=ledger.evaluated,
            reused=ledger.reused, duplicates=ledger.duplicated, failed=ledger.failed, pruned=ledger.pruned,
            best_value=None if best is None else best.value,
            best_params={} if best is None else self._shown_params(space, best),
            seconds=seconds, generation=generation, stopped_by=stopped_by, executor=where, extra=extra)

    def _selected(self, storage, ostudy, extra: dict[str, Any]):
        """The trial the study's selection rule chooses (the best when the rule cannot choose yet), with the
        rule's reason and how far the best can be trusted in ``extra``."""
        chooser = self._chooser(storage, ostudy)
        rule = self.study.file.selection[0]
        try:
            choice = chooser.choose(rule)
            extra["selection"] = {"rule": rule.label, "reason": choice.reason, "trial": choice.trial.number,
                                  "members": [[t.number, w] for t, w in zip(choice.trials, choice.weights)]}
            best = choice.trial
        except StorageError as exc:  # e.g. a race cut by the timeout: the best, and why
            best = chooser.best()
            extra["selection"] = {"rule": rule.label, "reason": f"not ready ({exc}); showing the best",
                                  "trial": best.number}
        extra["trust"] = chooser.trust()
        return best

    @staticmethod
    def _shown_params(space, trial) -> dict[str, Any]:
        if trial.user_attrs.get("anchor"):
            return {"(the objective's defaults)": ", ".join(f"{k}={v}" for k, v in
                                                          (trial.user_attrs.get("defaults") or {}).items())}
        return config_for_display(space, trial)

    # ------------------------------------------------------------------------------------------
    def _open_study(self, storage: BaseStorage, space) -> optuna.Study:
        st = self.study
        fp = fingerprint(st, space, self._inputs)
        try:
            storage.get_study_id_from_name(st.name)
            exists = True
        except KeyError:
            exists = False
        if exists:
            study = optuna.load_study(study_name=st.name, storage=storage, pruner=self._pruner())
            old = storage.get_study_system_attrs(study._study_id).get(FINGERPRINT_KEY)
            if old is not None and old != fp and old != fingerprint(st, space):
                raise ConfigError([Problem(str(st.path), "name",
                    f"study '{st.name}' in {redact(self.storage_url)} was made from a different study "
                    "(search space, objective, optimizer, seed, direction or runner.mode changed, or the "
                    "files it reads: its trunk or stain reference file's content, or its images); give it a "
                    "new name or delete the old study", st.name)])
            if old != fp:  # none yet, or stored before fingerprints held what the study reads
                storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, fp)
            if MASKS_ATTR not in study.user_attrs:
                self._record_masks(study, space)
            self._record_defaults(study)
            return study
        study = optuna.create_study(study_name=st.name, storage=storage, directions=st.directions, pruner=self._pruner())
        storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, fp)
        study.set_user_attr(STUDY_ATTR, st.raw())
        study.set_user_attr("optimizer", st.optimizer_name)
        self._record_masks(study, space)
        self._record_defaults(study)
        return study

    def _record_defaults(self, study) -> None:
        """The objective's defaults, for the selection rules that measure a trial against them (``one_se``)."""
        defaults = getattr(self, "_defaults", None)
        if defaults is not None and study.user_attrs.get(DEFAULTS_ATTR) != jsonable(defaults):
            study.set_user_attr(DEFAULTS_ATTR, jsonable(defaults))

    def _record_masks(self, study, space) -> None:
        """Lengths of ``length: auto`` masks as bound to the objective, so that export can decode them."""
        raw = self.study.space.params
        study.set_user_attr(MASKS_ATTR, {n: p.length for n, p in space.params.items()
                                          if getattr(raw.get(n), "length", None) == "auto"})

    def _pruner(self):
        cfg = self.study.file.pruner
        return cfg.build() if cfg is not None else optuna.pruners.NopPruner()
