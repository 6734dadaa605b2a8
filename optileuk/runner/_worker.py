"""``optileuk worker``: evaluate the study's queued candidates, on this machine, on one device.

The queue is the study's storage (Optuna's multi-worker mechanism, no other protocol): the
driver adds each candidate as a WAITING trial with its params; a worker claims one by moving it
to RUNNING (``set_trial_state_values`` is atomic in the storage), evaluates it with a live
``optuna.Trial`` (so pruners see its reports), records a heartbeat while it runs (RDB
storages), and finishes the trial. A worker never asks a sampler for new trials.
"""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

import optuna
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import TrialState

from optileuk.config import study_from_dict
from optileuk.errors import StorageError
from optileuk.runner._executor import run_objective
from optileuk.runner._records import _bulk_capable

CLOSED_KEY = "optileuk:closed"  # study system attr: the driver is done with its workers


def finish(storage: BaseStorage, trial_id: int, outcome) -> None:
    """Write an evaluation's attrs, then its final state and value."""
    for key, value in {**outcome.attrs, "seconds": round(outcome.seconds, 6)}.items():
        storage.set_trial_user_attr(trial_id, key, value)
    if outcome.error:
        storage.set_trial_user_attr(trial_id, "error" if outcome.state == TrialState.FAIL else "pruned", outcome.error)
    values = [outcome.value] if outcome.state == TrialState.COMPLETE else None
    storage.set_trial_state_values(trial_id, outcome.state, values)


class _Heartbeat:
    def __init__(self, storage: BaseStorage, trial_id: int):
        self.storage, self.trial_id, self.stop = storage, trial_id, threading.Event()
        base = getattr(storage, "_backend", storage)
        self.interval = getattr(base, "heartbeat_interval", None) if isinstance(base, RDBStorage) else None
        self.thread = threading.Thread(target=self._run, daemon=True) if self.interval else None

    def _run(self) -> None:
        while not self.stop.wait(self.interval):
            try:
                self.storage.record_heartbeat(self.trial_id)
            except Exception:  # a missed beat only risks a retry of this trial
                pass

    def __enter__(self):
        if self.thread:
            self.storage.record_heartbeat(self.trial_id)
            self.thread.start()
        return self

    def __exit__(self, *exc):
        self.stop.set()


class Worker:
    """Claims and evaluates WAITING trials of one study until told to stop.

    Args:
        storage: the study's storage (opened with heartbeats for RDB storages).
        study_name: the study to serve.
        device: overrides the objective's ``device`` (``cpu``, ``cuda:N``).
        exit_idle: leave after this many seconds without work (``None`` = never).
        parent: leave when this process id is gone (local workers of a driver).
    """

    def __init__(self, storage: BaseStorage, study_name: str, *, device: str | None = None,
                 exit_idle: float | None = None, parent: int | None = None, poll: float = 0.1):
        self.storage, self.study_name, self.device = storage, study_name, device
        self.exit_idle, self.parent, self.poll = exit_idle, parent, poll
        self.evaluated = 0

    def _objective(self, study: optuna.Study):
        from optileuk.runner._runner import STUDY_ATTR

        raw = study.user_attrs.get(STUDY_ATTR)
        if raw is None:
            raise StorageError(f"storage: study '{self.study_name}' was not made by optileuk run (no {STUDY_ATTR})")
        st = study_from_dict(raw, Path(f"<study {self.study_name}>"))
        cfg = st.objective_config
        if self.device and "device" in type(cfg).model_fields:
            cfg = cfg.model_copy(update={"device": self.device})
        objective = st.objective(cfg)
        objective.prepare()  # the dataset is loaded once and kept for every trial
        return objective

    def _claim(self, study_id: int) -> int | None:
        waiting = self.storage.get_all_trials(study_id, deepcopy=False, states=(TrialState.WAITING,))
        for t in waiting:
            try:
                if self._take(t._trial_id):
                    return t._trial_id
            except Exception:  # locked by another worker meanwhile: try the next one
                continue
        return None

    def _take(self, trial_id: int) -> bool:
        """WAITING -> RUNNING, won by exactly one worker.

        On RDB storages this is one conditional UPDATE (``... WHERE state = 'WAITING'``): Optuna's
        read-then-write claim relies on ``SELECT ... FOR UPDATE``, which SQLite ignores, so two
        workers could both take a trial there. Other storages use Optuna's own claim.
        """
        if _bulk_capable(self.storage):  # an RDB storage with the table layout this was written for
            from datetime import datetime, timezone

            from optuna.storages._rdb import models
            from optuna.storages._rdb.storage import _create_scoped_session
            from sqlalchemy import update

            table = models.TrialModel.__table__
            now = datetime.now(timezone.utc).replace(tzinfo=None)
            with _create_scoped_session(self.storage.scoped_session) as session:
                res = session.execute(update(table).where(table.c.trial_id == trial_id, table.c.state == "WAITING")
                                      .values(state="RUNNING", datetime_start=now))
                return res.rowcount == 1
        return bool(self.storage.set_trial_state_values(trial_id, TrialState.RUNNING))

    def run(self) -> int:
        study_id = self._wait_for_study()
        study = optuna.load_study(study_name=self.study_name, storage=self.storage,
                                  pruner=self._pruner(study_id))
        objective = self._objective(study)
        idle_since = time.monotonic()
        while True:
            if self.storage.get_study_system_attrs(study_id).get(CLOSED_KEY):
                return self.evaluated
            if self.parent is not None and not _alive(self.parent):
                return self.evaluated
            trial_id = self._claim(study_id)
            if trial_id is None:
                if self.exit_idle is not None and time.monotonic() - idle_since > self.exit_idle:
                    return self.evaluated
                # back off while idle: polling must not steal the CPU from busy workers
                time.sleep(min(self.poll * (1 + (time.monotonic() - idle_since) * 2), 0.5))
                continue
            tag = f"{os.uname().nodename}:{os.getpid()}:{self.device or 'default'}"
            self.storage.set_trial_user_attr(trial_id, "worker", tag)  # who holds it, while it runs
            frozen = self.storage.get_trial(trial_id)
            config = objective.space.from_record(frozen.params, frozen.user_attrs)
            with _Heartbeat(self.storage, trial_id):
                outcome = run_objective(objective, config, trial=optuna.Trial(study, trial_id))
            finish(self.storage, trial_id, outcome)
            self.evaluated += 1
            idle_since = time.monotonic()

    def _wait_for_study(self) -> int:
        """Workers may start before the driver has created the study: wait for it (``exit_idle``)."""
        start = time.monotonic()
        while True:
            try:
                return self.storage.get_study_id_from_name(self.study_name)
            except KeyError:
                if self.exit_idle is not None and time.monotonic() - start > self.exit_idle:
                    raise StorageError(f"storage: no study named '{self.study_name}'") from None
                time.sleep(max(self.poll, 0.5))

    def _pruner(self, study_id: int):
        from optileuk.runner._runner import STUDY_ATTR

        raw = self.storage.get_study_user_attrs(study_id).get(STUDY_ATTR) or {}
        cfg = raw.get("pruner")
        if not cfg:
            return optuna.pruners.NopPruner()
        from optileuk.config._study import PrunerConfig

        return PrunerConfig.model_validate(cfg).build()


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
        return True
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
