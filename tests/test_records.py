"""The batched trial writer stores exactly what Optuna's own path stores."""

from __future__ import annotations

import math
from datetime import datetime, timedelta

import optuna
import pytest
from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution
from optuna.trial import FrozenTrial, TrialState

from optileuk.storage import TrialWriter
from optileuk.storage._write import _bulk_capable
from optileuk.storage import open_storage


def _trials():
    dists = {"x": FloatDistribution(-1, 1), "k": IntDistribution(2, 8, step=2),
             "c": CategoricalDistribution(["a", None, 3.5]), "lr": FloatDistribution(1e-4, 1, log=True)}
    start = datetime(2026, 1, 2, 3, 4, 5)
    out = []
    for i, (state, value) in enumerate([(TrialState.COMPLETE, 1.5), (TrialState.COMPLETE, math.inf),
                                        (TrialState.FAIL, None), (TrialState.PRUNED, None),
                                        (TrialState.COMPLETE, -2.0)]):
        out.append(FrozenTrial(
            number=-1, state=state, value=value, datetime_start=start + timedelta(seconds=i),
            datetime_complete=start + timedelta(seconds=i + 1),
            params={"x": 0.25 * i - 0.5, "k": 2 + 2 * (i % 4), "c": ["a", None, 3.5][i % 3], "lr": 10 ** -(i % 4)},
            distributions=dists, user_attrs={"generation": 1, "index": i, "note": {"a": [1, 2]}},
            system_attrs={"optileuk:told": 1e12} if value is None else {},
            intermediate_values={0: 3.0, 1: float(i)} if state == TrialState.PRUNED else {}, trial_id=-1))
    return out


def _view(t: FrozenTrial):
    return (t.number, t.state, t.value, t.params, t.distributions, t.user_attrs, t.system_attrs,
            t.intermediate_values, t.datetime_start, t.datetime_complete)


def test_bulk_insert_equals_optunas_own_path(tmp_path):
    a = open_storage(f"sqlite:///{tmp_path}/a.db")
    b = open_storage(f"sqlite:///{tmp_path}/b.db")
    assert _bulk_capable(a)
    sa = optuna.create_study(storage=a, study_name="s")
    sb = optuna.create_study(storage=b, study_name="s")
    sa.add_trial(_trials()[0])  # numbering continues after existing trials
    sb.add_trial(_trials()[0])
    w = TrialWriter(a, sa._study_id, flush_seconds=60)
    for t in _trials():
        w.add(t)
    assert len(sa.get_trials()) == 1  # still buffered
    w.flush()
    for t in _trials():
        sb.add_trial(t)
    ta = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/a.db").get_trials()
    tb = optuna.load_study(study_name="s", storage=f"sqlite:///{tmp_path}/b.db").get_trials()
    assert [_view(t) for t in ta] == [_view(t) for t in tb]
    assert [t.number for t in ta] == list(range(6))


def test_other_storages_take_the_public_path(tmp_path):
    st = open_storage(f"journal://{tmp_path}/j.log")
    assert not _bulk_capable(st)
    s = optuna.create_study(storage=st, study_name="s")
    w = TrialWriter(st, s._study_id, flush_seconds=0)
    for t in _trials():
        w.add(t)
    assert [t.state for t in s.get_trials()] == [t.state for t in _trials()]


def test_only_finished_trials_are_written(tmp_path):
    st = open_storage(f"sqlite:///{tmp_path}/a.db")
    s = optuna.create_study(storage=st, study_name="s")
    t = _trials()[0]
    t.state = TrialState.RUNNING
    with pytest.raises(ValueError):
        TrialWriter(st, s._study_id, flush_seconds=0).add(t)
