"""Parallel evaluation through the study's storage: local worker processes and remote workers.

The driver (``optileuk run``) adds a generation's candidates as WAITING trials and waits until
they are finished; any ``optileuk worker`` that reaches the storage -- the local ones the driver
starts, one per device slot, and any started by hand on other machines -- claims and evaluates
them. With an RDB storage, workers record heartbeats; a trial whose worker died is failed by
Optuna's ``fail_stale_trials`` and queued once more.
"""

from __future__ import annotations

import subprocess
import sys
import time
import warnings
from typing import Sequence

import optuna
from optuna.storages import RDBStorage
from optuna.trial import FrozenTrial, TrialState

from optileuk.runner._executor import Outcome
from optileuk.runner._worker import CLOSED_KEY

RETRY_OF = "retry_of"


def device_slots(devices, trials_per_device: int, workers: int | None) -> list[str]:
    """One entry per worker process: ``auto`` = every CUDA device, else the CPU."""
    import torch

    if devices == "auto":
        devices = [f"cuda:{i}" for i in range(torch.cuda.device_count())] or ["cpu"]
    elif devices == "cpu":
        devices = ["cpu"]
    slots = [d for d in devices for _ in range(trials_per_device)]
    if workers is not None:
        slots = [slots[i % len(slots)] for i in range(workers)]
    return slots


class PoolExecutor:
    def __init__(self, study: optuna.Study, storage_url: str, slots: Sequence[str], heartbeat: int, poll: float = 0.2):
        self.study, self.storage, self.url = study, study._storage, storage_url
        self.slots, self.heartbeat, self.poll = list(slots), heartbeat, poll
        self.procs: list[subprocess.Popen] = []
        base = getattr(self.storage, "_backend", self.storage)
        self.heartbeats = isinstance(base, RDBStorage) and base.heartbeat_interval is not None

    def start(self) -> None:
        import os

        self.storage.set_study_system_attr(self.study._study_id, CLOSED_KEY, False)
        for slot in self.slots:
            cmd = [sys.executable, "-m", "optileuk.cli", "worker", "--storage", self.url, "--study",
                   self.study.study_name, "--device", slot, "--parent", str(os.getpid()),
                   "--heartbeat", str(self.heartbeat)]
            self.procs.append(subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL))

    def stop(self) -> None:
        try:
            self.storage.set_study_system_attr(self.study._study_id, CLOSED_KEY, True)
        except Exception:
            pass
        deadline = time.monotonic() + 10
        for p in self.procs:
            try:
                p.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                p.kill()

    def enqueue(self, template: FrozenTrial) -> int:
        return self.storage.create_new_trial(self.study._study_id, template_trial=template)

    def wait(self, trial_ids: list[int], templates: dict[int, FrozenTrial]) -> dict[int, tuple[int, FrozenTrial]]:
        """Wait until every trial is finished; a trial failed as stale (its worker died) is queued
        once more. Returns ``{original id: (id that finished, frozen trial)}``."""
        current = {tid: tid for tid in trial_ids}
        retried: set[int] = set()
        done: dict[int, tuple[int, FrozenTrial]] = {}
        last_stale_check = 0.0
        while len(done) < len(trial_ids):
            if self.heartbeats and time.monotonic() - last_stale_check > 1.0:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                    optuna.storages.fail_stale_trials(self.study)
                last_stale_check = time.monotonic()
            self._check_workers()
            for orig, tid in list(current.items()):
                if orig in done:
                    continue
                t = self.storage.get_trial(tid)
                if not t.state.is_finished():
                    continue
                stale = t.state == TrialState.FAIL and not t.user_attrs.get("error")
                if stale and orig not in retried:
                    retried.add(orig)
                    tpl = templates[orig]
                    copy = FrozenTrial(number=-1, state=TrialState.WAITING, value=None, datetime_start=None,
                                       datetime_complete=None, params=tpl.params, distributions=tpl.distributions,
                                       user_attrs={**tpl.user_attrs, RETRY_OF: t.number}, system_attrs={},
                                       intermediate_values={}, trial_id=-1)
                    current[orig] = self.enqueue(copy)
                    continue
                done[orig] = (tid, t)
            if len(done) < len(trial_ids):
                time.sleep(self.poll)
        return done

    def _check_workers(self) -> None:
        if self.procs and all(p.poll() is not None for p in self.procs):
            codes = sorted({p.returncode for p in self.procs})
            from optileuk.runner._runner import RunFailed

            raise RunFailed(f"every local worker exited (exit codes {codes}); run 'optileuk worker' by hand to see why")


def outcome_of(t: FrozenTrial) -> Outcome:
    """What a finished trial says about its evaluation."""
    if t.state == TrialState.COMPLETE:
        return Outcome(TrialState.COMPLETE, t.value, dict(t.user_attrs), None, t.user_attrs.get("seconds", 0.0))
    if t.state == TrialState.PRUNED:
        steps = t.intermediate_values
        return Outcome(TrialState.PRUNED, steps[max(steps)] if steps else None, dict(t.user_attrs),
                       t.user_attrs.get("pruned", "pruned"))
    error = t.user_attrs.get("error") or "worker died during the trial (heartbeat stale), retried once"
    return Outcome(TrialState.FAIL, None, dict(t.user_attrs), error)
