"""Writing finished trials to a storage, many per transaction where the storage allows it.

Optuna's RDB storage writes a trial through its ORM, row by row, in its own transaction: about
50-100 trials/s on SQLite with ten parameters. For cheap objectives that bookkeeping would
dominate, so :class:`TrialWriter` buffers finished trials for a short time (``flush_seconds``)
and writes a buffer in one transaction with SQLAlchemy Core into Optuna's own tables (schema
checked against the version this code was written for; any other storage, or another schema
version, takes Optuna's public ``create_new_trial`` path, one trial at a time).

What can be lost in a crash is bounded by ``flush_seconds`` of evaluations of cheap objectives;
an objective slower than that is written as soon as it finishes.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from typing import Sequence

from optuna.distributions import distribution_to_json
from optuna.storages import BaseStorage, RDBStorage
from optuna.trial import FrozenTrial, TrialState

from optileuk.storage._read import rdb_of


class TrialWriter:
    """Buffer of finished trials for one study; ``add`` and ``flush``.

    Example:
        >>> import optuna
        >>> study = optuna.create_study()
        >>> w = TrialWriter(study._storage, study._study_id, flush_seconds=0)
        >>> w.add(optuna.trial.create_trial(value=1.0))
        >>> len(study.trials)
        1
    """

    def __init__(self, storage: BaseStorage, study_id: int, *, flush_seconds: float = 0.5, max_buffer: int = 512):
        self.storage = storage
        self.study_id = study_id
        self.flush_seconds = flush_seconds
        self.max_buffer = max_buffer
        self._buffer: list[FrozenTrial] = []
        self._oldest = 0.0
        self._bulk = _bulk_capable(storage)

    def add(self, trial: FrozenTrial) -> None:
        if not self._buffer:
            self._oldest = time.monotonic()
        self._buffer.append(trial)
        if len(self._buffer) >= self.max_buffer or time.monotonic() - self._oldest >= self.flush_seconds:
            self.flush()

    def flush(self) -> None:
        if not self._buffer:
            return
        trials, self._buffer = self._buffer, []
        if self._bulk:
            _bulk_insert(self.storage, self.study_id, trials)
        else:
            for t in trials:
                self.storage.create_new_trial(self.study_id, template_trial=t)

    def __len__(self) -> int:
        return len(self._buffer)


def _bulk_capable(storage: BaseStorage) -> bool:
    """Optuna's RDB storage with the schema version these writes (and the reads of
    :mod:`optileuk.runner._read`) were written for."""
    return rdb_of(storage) is not None


def _bulk_insert(storage: BaseStorage, study_id: int, trials: Sequence[FrozenTrial]) -> None:
    from sqlalchemy import func, insert

    from optuna.storages._rdb import models
    from optuna.storages._rdb.storage import _create_scoped_session

    rdb: RDBStorage = getattr(storage, "_backend", storage)
    with _create_scoped_session(rdb.scoped_session) as session:
        # lock the study row (as Optuna does) so trial numbers stay consecutive across writers
        models.StudyModel.find_or_raise_by_id(study_id, session, for_update=True)
        number = session.query(func.count(models.TrialModel.trial_id)).filter(
            models.TrialModel.study_id == study_id).scalar()
        params, values, uattrs, sattrs, inter = [], [], [], [], []
        for t in trials:
            if t.state not in (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED):
                raise ValueError("TrialWriter only writes finished trials")
            res = session.execute(insert(models.TrialModel.__table__).values(
                number=number, study_id=study_id, state=t.state.name,
                datetime_start=_utc(t.datetime_start), datetime_complete=_utc(t.datetime_complete)))
            trial_id = res.inserted_primary_key[0]
            number += 1
            for name, value in t.params.items():
                dist = t.distributions[name]
                params.append({"trial_id": trial_id, "param_name": name,
                               "param_value": dist.to_internal_repr(value),
                               "distribution_json": distribution_to_json(dist)})
            for i, v in enumerate(t.values or []):
                stored, kind = models.TrialValueModel.value_to_stored_repr(v)
                values.append({"trial_id": trial_id, "objective": i, "value": stored, "value_type": kind.name})
            for key, v in t.user_attrs.items():
                uattrs.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(v)})
            for key, v in t.system_attrs.items():
                sattrs.append({"trial_id": trial_id, "key": key, "value_json": json.dumps(v)})
            for step, v in t.intermediate_values.items():
                stored, kind = models.TrialIntermediateValueModel.intermediate_value_to_stored_repr(v)
                inter.append({"trial_id": trial_id, "step": step, "intermediate_value": stored,
                              "intermediate_value_type": kind.name})
        for model, rows in ((models.TrialParamModel, params), (models.TrialValueModel, values),
                            (models.TrialUserAttributeModel, uattrs), (models.TrialSystemAttributeModel, sattrs),
                            (models.TrialIntermediateValueModel, inter)):
            if rows:
                session.execute(insert(model.__table__), rows)


def _utc(dt: datetime | None) -> datetime:
    """Optuna's RDB schema keeps naive UTC datetimes."""
    return (dt or datetime.now()).astimezone(timezone.utc).replace(tzinfo=None)
