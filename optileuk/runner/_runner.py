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

import optuna
from optuna.storages import BaseStorage
from optuna.trial import TrialState

from optileuk.config import Study
from optileuk.errors import ConfigError, Problem
from optileuk.runner._common import FINGERPRINT_KEY, FINISHED, MASKS_ATTR, STALE_KEY, STATE_KEY, STUDY_ATTR
from optileuk.runner._executors import Executor, InlineExecutor
from optileuk.runner._ledger import Ledger, Progress
from optileuk.runner._loops import AsyncLoop, GenerationalLoop, RunParts, StateSaver
from optileuk.runner._past import Past
from optileuk.runner._records import TrialWriter
from optileuk.runner._trials import config_for_display, decode_state, fingerprint
from optileuk.storage import open_storage

__all__ = ["Progress", "Runner", "Summary"]


@dataclass
class Summary:
    study_name: str
    storage: str
    trials: int
    evaluated: int
    reused: int
    failed: int
    pruned: int
    best_value: float | None
    best_params: dict[str, Any]
    seconds: float
    generation: int
    stopped_by: str
    executor: str = "inline"
    extra: dict[str, Any] = field(default_factory=dict)


class Runner:
    """Run one study to its budget (or resume it).

    Args:
        study: a validated study (:func:`optileuk.config.load_study`).
        storage: an opened storage; default: the study file's ``storage`` URL.
        on_progress: called after every finished trial with a :class:`Progress`.
        state_every: seconds between two saves of the optimizer state (always saved at the end).
        objective: an objective to use instead of a fresh one (it must match the study's; optileuk
            compare shares one, with its caches, across the runs of one process).

    Example:
        >>> from optileuk.config import load_study  # doctest: +SKIP
        >>> Runner(load_study("studies/rastrigin_pso.yaml")).run().best_value  # doctest: +SKIP
    """

    def __init__(self, study: Study, *, storage: BaseStorage | None = None,
                 on_progress: Callable[[Progress], None] | None = None, state_every: float = 2.0,
                 objective: Any = None):
        self.study = study
        self._objective = objective
        self.storage_url = study.file.storage
        self._storage = storage
        self.on_progress = on_progress
        self.on_executor: Callable[[str], None] | None = None  # told where candidates are evaluated
        self.state_every = state_every
        self._prepared: tuple | None = None

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
            if len(getattr(objective, "directions", ["minimize"])) > 1:
                raise ConfigError([Problem(str(st.path), "objective.multi_objective",
                    "is for plain Optuna studies with a multi-objective sampler (e.g. NSGA-II); "
                    "optileuk run optimizes one value", True)])
            r = st.file.runner
            if r.scheduler:  # reachable, before anything is written
                from optileuk.runner._dask import connect

                connect(r.scheduler, str(st.path)).close()
            elif r.distributed:
                from optileuk.runner._dask import check_slots, device_slots

                check_slots(device_slots(r.devices, r.trials_per_device, r.workers), str(st.path))
            objective.prepare()
            space = objective.bind(st.space)
            storage = self._storage or open_storage(self.storage_url)
            self._prepared = (objective, space, storage, self._open_study(storage, space))
        return self

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
        budget = st.file.budget
        population = getattr(st.optimizer_config, "population", None) or 1  # every built-in config has one
        hint = budget.generations or (-(-budget.trials // population) if budget.trials else None)
        opt = st.optimizer.build(space.box, st.optimizer_config, seed=st.file.seed, max_generations=hint)
        saved = storage.get_study_system_attrs(ostudy._study_id).get(STATE_KEY)
        if saved:
            opt.load_state_dict(decode_state(saved["blob"]))
        sign = 1.0 if st.direction == "minimize" else -1.0
        past = Past(ostudy, sign)
        writer = TrialWriter(storage, ostudy._study_id, flush_seconds=st.file.runner.flush_seconds)
        pruner = st.file.pruner
        ledger = Ledger(past, writer, optimizer=st.optimizer_name, sign=sign, budget=budget.trials,
                        max_consecutive=st.file.runner.max_consecutive_failures, source=str(st.path),
                        prune=(pruner.model_dump(), st.name, st.direction) if pruner else None,
                        on_progress=self.on_progress)
        t0 = time.perf_counter()
        executor = self._executor(objective, space)
        try:
            with executor:
                if self.on_executor:
                    self.on_executor(executor.describe())
                parts = RunParts(space, opt, executor, ledger, past, StateSaver(storage, ostudy._study_id, writer,
                                 self.state_every), budget, None if budget.timeout is None else t0 + budget.timeout)
                if st.file.runner.mode == "async":
                    loop = AsyncLoop(parts, saved, population)
                else:
                    loop = GenerationalLoop(parts, int(saved["generation"]) if saved else 0)
                stopped_by = loop.run()
                where = executor.describe()
        finally:
            writer.flush()
        return self._summary(ostudy, space, ledger, loop.generation, stopped_by, where, time.perf_counter() - t0)

    def _executor(self, objective, space) -> Executor:
        r = self.study.file.runner
        if not r.distributed:
            return InlineExecutor(objective)
        from optileuk.runner._dask import DaskExecutor, ObjectiveSpec, device_slots

        st = self.study
        spec = ObjectiveSpec(st.objective_cls, st.objective_config, st.space, st.objective_seed)
        slots = [] if r.scheduler else device_slots(r.devices, r.trials_per_device, r.workers)
        name = f"optileuk-{st.name}-{fingerprint(st, space)}"
        return DaskExecutor(spec, name, slots=slots, scheduler=r.scheduler, listen=r.listen, source=str(st.path))

    def _summary(self, ostudy, space, ledger: Ledger, generation: int, stopped_by: str, where: str,
                 seconds: float) -> Summary:
        st = self.study
        final = [t for t in ostudy.get_trials(deepcopy=False, states=FINISHED) if not t.system_attrs.get(STALE_KEY)]
        complete = [t for t in final if t.state == TrialState.COMPLETE]
        best = (min if st.direction == "minimize" else max)(complete, key=lambda t: t.value) if complete else None
        return Summary(
            study_name=st.name, storage=self.storage_url, trials=len(final), evaluated=ledger.evaluated,
            reused=ledger.reused, failed=ledger.failed, pruned=ledger.pruned,
            best_value=None if best is None else best.value,
            best_params={} if best is None else config_for_display(space, best),
            seconds=seconds, generation=generation, stopped_by=stopped_by, executor=where)

    # ------------------------------------------------------------------------------------------
    def _open_study(self, storage: BaseStorage, space) -> optuna.Study:
        st = self.study
        fp = fingerprint(st, space)
        names = {s.study_name: s for s in storage.get_all_studies()}
        if st.name in names:
            study = optuna.load_study(study_name=st.name, storage=storage, pruner=self._pruner())
            old = storage.get_study_system_attrs(study._study_id).get(FINGERPRINT_KEY)
            if old is not None and old != fp:
                raise ConfigError([Problem(str(st.path), "name",
                    f"study '{st.name}' in {self.storage_url} was made from a different study "
                    "(search space, objective, optimizer, seed, direction or runner.mode changed); give it a "
                    "new name or delete the old study", st.name)])
            if old is None:
                storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, fp)
            if MASKS_ATTR not in study.user_attrs:
                self._record_masks(study, space)
            return study
        study = optuna.create_study(study_name=st.name, storage=storage, direction=st.direction, pruner=self._pruner())
        storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, fp)
        study.set_user_attr(STUDY_ATTR, st.raw())
        study.set_user_attr("optimizer", st.optimizer_name)
        self._record_masks(study, space)
        return study

    def _record_masks(self, study, space) -> None:
        """Lengths of ``length: auto`` masks as bound to the objective, so that export can decode them."""
        raw = self.study.space.params
        study.set_user_attr(MASKS_ATTR, {n: p.length for n, p in space.params.items()
                                          if getattr(raw.get(n), "length", None) == "auto"})

    def _pruner(self):
        cfg = self.study.file.pruner
        return cfg.build() if cfg is not None else optuna.pruners.NopPruner()
