"""The runner: owns one Optuna study and drives one optimizer generation by generation.

For every ``evaluate`` call of the optimizer it decodes the candidates, evaluates those not
already finished in the storage, records each as an Optuna trial (params with proper
distributions, user attrs ``optimizer``, ``generation``, ``batch``, ``index``, ``seconds``) and
returns the values, oriented so the optimizer always minimises. After a generation the
optimizer's state is saved in the study's system attrs; a re-run loads it and replays from there,
taking the values of trials that already finished instead of evaluating them again.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import optuna
from optuna.storages import BaseStorage
from optuna.trial import FrozenTrial, TrialState

from optileuk.config import Study
from optileuk.errors import ConfigError, OptileukError, Problem
from optileuk.runner._executor import InlineExecutor, Outcome
from optileuk.runner._pool import outcome_of
from optileuk.runner._records import TrialWriter
from optileuk.runner._trials import (
    TOLD_KEY,
    _config_for_display,
    _finish,
    _key,
    _penalty_before,
    _running,
    _state,
    _told,
    decode_state,
    encode_state,
    fingerprint,
)
from optileuk.storage import open_storage

STATE_KEY = "optileuk:state"
FINGERPRINT_KEY = "optileuk:fingerprint"
STUDY_ATTR = "optileuk.study"
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)


class RunFailed(OptileukError):
    """The run stopped because candidates kept failing."""


class _Stop(Exception):
    """Internal: the budget ran out in the middle of a generation."""


@dataclass
class Progress:
    done: int
    total: int | None
    best: float | None
    elapsed: float
    generation: int


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
        self.state_every = state_every
        self._prepared: tuple | None = None

    def prepare(self) -> "Runner":
        """Build the objective, bind the space and open the storage and study (no trial runs).

        Everything that can fail on a user's input fails here, before any progress is shown.
        """
        if self._prepared is None:
            optuna.logging.set_verbosity(optuna.logging.WARNING)
            objective = self._objective or self.study.objective()
            if len(getattr(objective, "directions", ["minimize"])) > 1:
                raise ConfigError([Problem(str(self.study.path), "objective.multi_objective",
                    "is for plain Optuna studies with a multi-objective sampler (e.g. NSGA-II); "
                    "optileuk run optimizes one value", True)])
            objective.prepare()
            space = objective.bind(self.study.space)
            r = self.study.file.runner
            parallel = r.workers is not None or isinstance(r.devices, list) or r.trials_per_device > 1
            storage = self._storage or open_storage(self.storage_url, heartbeat_interval=r.heartbeat if parallel else None,
                                                    grace_period=2 * r.heartbeat if parallel else None)
            self._prepared = (objective, space, storage, self._open_study(storage, space))
        return self

    # ------------------------------------------------------------------------------------------
    def run(self) -> Summary:
        st = self.study
        t0 = time.perf_counter()
        objective, space, storage, ostudy = self.prepare()._prepared
        box = space.box
        sid = ostudy._study_id

        budget = st.file.budget
        per_gen = getattr(st.optimizer_config, "population", None)  # every built-in config has one
        hint = budget.generations or (math.ceil(budget.trials / per_gen) if budget.trials and per_gen else None)
        opt = st.optimizer.build(box, st.optimizer_config, seed=st.file.seed, max_generations=hint)
        generation = 0
        saved = storage.get_study_system_attrs(sid).get(STATE_KEY)
        if saved:
            opt.load_state_dict(decode_state(saved["blob"]))
            generation = int(saved["generation"])

        every = ostudy.get_trials(deepcopy=False)
        trials = [t for t in every if t.state in FINISHED]
        known: dict[tuple[int, int, int], FrozenTrial] = {}
        pending: dict[tuple[int, int, int], FrozenTrial] = {}  # queued by an earlier driver, not finished
        for t in every:
            key = _key(t)
            if key is not None:
                (known if t.state in FINISHED else pending)[key] = t
        # one per candidate: a trial failed as stale and its retry count once
        done = len({_key(t) or ("trial", t.number) for t in trials})
        sign = 1.0 if st.direction == "minimize" else -1.0
        oriented = [sign * t.value for t in trials if t.state == TrialState.COMPLETE and t.value is not None]
        worst = max(oriented) if oriented else None
        best = min(oriented) if oriented else None

        writer = TrialWriter(storage, sid, flush_seconds=st.file.runner.flush_seconds)
        executor = InlineExecutor(objective)
        pool = self._pool(ostudy)
        counters = {"evaluated": 0, "reused": 0, "failed": 0, "pruned": 0, "consecutive": 0}
        timeout = budget.timeout
        stopped_by = "budget"
        last_save = time.monotonic()

        def out_of_time() -> bool:
            return timeout is not None and time.perf_counter() - t0 >= timeout

        def penalty() -> float:
            if worst is None:
                return 1e12
            return worst + max(1.0, abs(worst))

        def evaluate_batch(x: np.ndarray, gen: int, batch: int) -> np.ndarray:
            nonlocal done, worst, best
            x = np.atleast_2d(np.asarray(x, dtype=float))
            values = np.empty(len(x))
            todo = []
            for i, row in enumerate(x):
                config = space.decode(box.clip(row))
                rec = space.record(config)
                old = known.get((gen, batch, i))
                if old is not None and old.params == rec[0] and all(
                        old.user_attrs.get(k) == v for k, v in rec[2].items()):
                    values[i] = _told(old, sign, every)
                    counters["reused"] += 1
                    continue
                todo.append((i, config, rec))
            cut = False
            if budget.trials is not None and done + len(todo) > budget.trials:
                todo, cut = todo[: max(budget.trials - done, 0)], True
            if pool is not None and todo:
                pool_batch(x, todo, values, gen, batch)
                if cut:
                    raise _Stop()
                return values

            live = st.file.pruner is not None
            if todo and not live and hasattr(objective, "evaluate_many") and not out_of_time():
                # a whole population in one vectorised pass (e.g. batched KNN distances)
                outcomes = iter(executor.evaluate_many([c for _, c, _ in todo]))
            else:
                outcomes = None
            for i, config, (params, dists, attrs) in todo:
                if outcomes is None and out_of_time():
                    raise _Stop()
                if live:  # a real trial in the storage while it trains: the pruner sees its reports
                    writer.flush()
                    template = self._frozen(_running(), params, dists, attrs, gen, batch, i, sign, 0.0)[0]
                    outcome = executor.evaluate_live(ostudy, config, template)
                else:
                    outcome = next(outcomes) if outcomes is not None else executor.evaluate(config)
                trial, told = self._frozen(outcome, params, dists, attrs, gen, batch, i, sign, penalty())
                if outcome.trial_id is None:
                    writer.add(trial)
                else:
                    _finish(storage, outcome.trial_id, trial)
                done += 1
                counters["evaluated"] += 1
                if outcome.state == TrialState.COMPLETE:
                    counters["consecutive"] = 0
                    worst = told if worst is None else max(worst, told)
                    best = told if best is None else min(best, told)
                elif outcome.state == TrialState.PRUNED:
                    counters["consecutive"] = 0
                    counters["pruned"] += 1
                else:
                    counters["failed"] += 1
                    counters["consecutive"] += 1
                    if counters["consecutive"] >= st.file.runner.max_consecutive_failures:
                        writer.flush()
                        raise RunFailed(
                            f"{st.path}: stopped after {counters['consecutive']} consecutive failed candidates "
                            f"(runner.max_consecutive_failures); last error: {outcome.error}")
                values[i] = told
                if self.on_progress:
                    self.on_progress(Progress(done, budget.trials, None if best is None else sign * best,
                                              time.perf_counter() - t0, gen))
            if cut:  # the budget ends inside this batch: the generation is not told, it is replayed on resume
                raise _Stop()
            return values

        def pool_batch(x, todo, values, gen, batch):
            nonlocal done, worst, best
            writer.flush()
            ids, templates = [], {}
            for i, config, (params, dists, attrs) in todo:
                old = pending.get((gen, batch, i))
                if old is not None and old.params == params:  # queued before a crash: wait for it
                    tid, tpl = old._trial_id, old
                else:
                    tpl = self._frozen(_state(TrialState.WAITING), params, dists, attrs, gen, batch, i, sign, 0.0)[0]
                    tid = pool.enqueue(tpl)
                ids.append(tid)
                templates[tid] = tpl
            results = pool.wait(ids, templates)
            for (i, config, rec), tid in zip(todo, ids):
                t = results[tid][1]
                outcome = outcome_of(t)
                if outcome.state == TrialState.COMPLETE:
                    told = sign * outcome.value
                    worst = told if worst is None else max(worst, told)
                    best = told if best is None else min(best, told)
                    counters["consecutive"] = 0
                elif outcome.state == TrialState.PRUNED:
                    told = sign * outcome.value if outcome.value is not None else _penalty_before(t.number, sign, ostudy)
                    counters["pruned"] += 1
                    counters["consecutive"] = 0
                else:
                    told = _penalty_before(t.number, sign, ostudy)
                    counters["failed"] += 1
                    counters["consecutive"] += 1
                    if counters["consecutive"] >= st.file.runner.max_consecutive_failures:
                        raise RunFailed(
                            f"{st.path}: stopped after {counters['consecutive']} consecutive failed candidates "
                            f"(runner.max_consecutive_failures); last error: {outcome.error}")
                done += 1
                counters["evaluated"] += 1
                values[i] = told
                if self.on_progress:
                    self.on_progress(Progress(done, budget.trials, None if best is None else sign * best,
                                              time.perf_counter() - t0, gen))
            return values

        unsaved: tuple[int, str] | None = None  # last completed generation, not yet saved

        try:
            while True:
                if budget.generations is not None and generation >= budget.generations:
                    break
                if (budget.trials is not None and done >= budget.trials) or out_of_time():
                    stopped_by = "timeout" if out_of_time() else "budget"
                    break
                gen = generation + 1
                batch_no = [0]

                def evaluate(x: np.ndarray, _gen=gen) -> np.ndarray:
                    batch_no[0] += 1
                    return evaluate_batch(x, _gen, batch_no[0])

                opt.step(evaluate)
                generation = gen
                unsaved = (generation, encode_state(opt.state_dict()))
                if time.monotonic() - last_save >= self.state_every:
                    self._save_state(storage, sid, writer, *unsaved)
                    unsaved, last_save = None, time.monotonic()
        except _Stop:
            stopped_by = "timeout" if out_of_time() else "budget"
        finally:
            writer.flush()
            if pool is not None:
                pool.stop()
            if unsaved is not None:  # only whole generations are saved: a cut one is replayed
                self._save_state(storage, sid, writer, *unsaved)

        final = [t for t in ostudy.get_trials(deepcopy=False, states=FINISHED)]
        complete = [t for t in final if t.state == TrialState.COMPLETE]
        best_trial = (min if st.direction == "minimize" else max)(complete, key=lambda t: t.value) if complete else None
        return Summary(
            study_name=st.name, storage=self.storage_url, trials=len(final),
            evaluated=counters["evaluated"], reused=counters["reused"], failed=counters["failed"],
            pruned=counters["pruned"],
            best_value=None if best_trial is None else best_trial.value,
            best_params={} if best_trial is None else _config_for_display(space, best_trial),
            seconds=time.perf_counter() - t0, generation=generation, stopped_by=stopped_by)

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
                    "(search space, objective, optimizer, seed or direction changed); give it a new name "
                    "or delete the old study", st.name)])
            if old is None:
                storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, fp)
            return study
        study = optuna.create_study(study_name=st.name, storage=storage, direction=st.direction, pruner=self._pruner())
        storage.set_study_system_attr(study._study_id, FINGERPRINT_KEY, fp)
        study.set_user_attr(STUDY_ATTR, st.raw())
        study.set_user_attr("optimizer", st.optimizer_name)
        return study

    def _pool(self, ostudy):
        """The parallel executor when the study asks for worker processes, else ``None``."""
        r = self.study.file.runner
        if r.workers is None and not isinstance(r.devices, list) and r.trials_per_device == 1:
            return None
        from optileuk.runner._pool import PoolExecutor, device_slots

        if self.storage_url == "memory":
            raise ConfigError([Problem(str(self.study.path), "storage",
                                       "must be shared by processes (sqlite, postgresql, journal, redis) for runner.workers",
                                       "memory")])
        pool = PoolExecutor(ostudy, self.storage_url, device_slots(r.devices, r.trials_per_device, r.workers),
                            heartbeat=r.heartbeat)
        pool.start()
        return pool

    def _pruner(self):
        cfg = self.study.file.pruner
        return cfg.build() if cfg is not None else optuna.pruners.NopPruner()

    def _save_state(self, storage, sid, writer, generation: int, blob: str) -> None:
        writer.flush()  # trials first: a state never runs ahead of the trials it was told
        storage.set_study_system_attr(sid, STATE_KEY, {"generation": generation, "blob": blob})

    def _frozen(self, o: Outcome, params, dists, attrs, gen, batch, index, sign, penalty) -> tuple[FrozenTrial, float]:
        user = {"optimizer": self.study.optimizer_name, "generation": gen, "batch": batch, "index": index,
                "seconds": round(o.seconds, 6), **attrs, **o.attrs}
        system: dict[str, Any] = {}
        if o.state in (TrialState.COMPLETE, TrialState.RUNNING, TrialState.WAITING):
            told = 0.0 if o.value is None else sign * o.value
        elif o.state == TrialState.PRUNED and o.value is not None:
            told = sign * o.value  # a pruned candidate gives the optimizer its last reported value
            user["pruned"] = o.error
            system[TOLD_KEY] = told
        else:
            told = penalty
            user["error"] = o.error
            system[TOLD_KEY] = told
        trial = FrozenTrial(number=-1, state=o.state, value=o.value if o.state == TrialState.COMPLETE else None,
                            datetime_start=o.start, datetime_complete=o.end, params=params,
                            distributions=dists, user_attrs=user, system_attrs=system,
                            intermediate_values=o.intermediate, trial_id=-1)
        return trial, told


