"""Studies that stay safe and fast as they grow: state as data (no pickle is ever loaded), resume
that reads only what it needs, one driver per study, old storages refused or rebuilt."""

from __future__ import annotations

import base64
import json
import pickle
import shutil
import signal
import socket
import subprocess
import threading
import time
import zlib
from pathlib import Path

import numpy as np
import optuna
import pytest

from conftest import optileuk_exe, run_cli, write
from optileuk import plain
from optileuk.config import load_study
from optileuk.runner import Runner
from optileuk.runner import _lease
from optileuk.storage import _read
from optileuk.storage import STATE_KEY
from optileuk.runner._lease import LEASE_KEY, Lease, LeaseHeld, LeaseLost
from optileuk.storage import open_storage

LEGACY = Path(__file__).parent / "data" / "legacy_v1"


class Boom:
    """Unpickling this creates a file: proof that a pickle was (or was not) loaded."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (open, (self.path, "w"))


# ---- plain: data in, data out -------------------------------------------------------------------
def test_plain_round_trips_what_optimizer_states_hold_through_json():
    rs = np.random.RandomState(5)
    state = {"np": rs.get_state(), "py": (3, tuple(range(5)), None), "gen": np.random.default_rng(1).bit_generator.state,
             7: {"nested": [np.float64(1.5), np.int32(-2), np.bool_(True)]}, "inf": float("-inf"), "nan": float("nan"),
             "masks": np.array([[True, False]]), "text": np.array(["a", "bc"]), "__odd": "key", (1, 2): "tuple key"}
    back = plain.decode(json.loads(json.dumps(plain.encode(state))))
    assert back["np"][0] == "MT19937" and np.array_equal(back["np"][1], state["np"][1]) and back["np"][2:] == state["np"][2:]
    assert back["py"] == state["py"] and isinstance(back["py"], tuple) and back["gen"] == state["gen"]
    assert back[7]["nested"] == [1.5, -2, True] and type(back[7]["nested"][1]) is np.int32
    assert back["inf"] == float("-inf") and np.isnan(back["nan"]) and back["__odd"] == "key" and back[(1, 2)] == "tuple key"
    assert back["masks"].dtype == bool and back["text"].tolist() == ["a", "bc"]
    rs2 = np.random.RandomState()
    rs2.set_state(back["np"])
    assert rs2.rand() == rs.rand()


def test_plain_refuses_objects_when_saving():
    with pytest.raises(plain.NotData, match="cannot be stored as data"):
        plain.encode({"x": Boom("nowhere")})
    with pytest.raises(plain.NotData, match="array of Python objects"):
        plain.encode(np.array([{"a": 1}], dtype=object))


def test_plain_never_loads_a_pickle(tmp_path):
    marker = tmp_path / "pwned"
    legacy = {"generation": 1, "blob": base64.b64encode(zlib.compress(pickle.dumps(Boom(str(marker))))).decode()}
    with pytest.raises(plain.NotData):
        plain.decode(legacy)
    # the new layout with a pickled member slipped into its arrays
    import io

    buf = io.BytesIO()
    np.savez(buf, a0=np.array([Boom(str(marker))], dtype=object))
    with pytest.raises(plain.NotData, match="without pickle"):
        plain.decode({"format": plain.FORMAT, "tree": {"__array__": "a0"}, "arrays": base64.b64encode(buf.getvalue()).decode()})
    for crafted in (lambda p: p.write_bytes(pickle.dumps(Boom(str(marker)))),
                    lambda p: np.savez(p, __tree__=np.frombuffer(b'{"format": 1, "tree": {"__array__": "a0"}}', np.uint8),
                                       a0=np.array([Boom(str(marker))], dtype=object))):
        path = tmp_path / "entry.npz"
        crafted(path)
        with pytest.raises(plain.NotData):
            plain.load(path)
    assert not marker.exists()


def test_a_dataset_round_trips_through_the_cache(tmp_path, monkeypatch):
    from optileuk.data import Dataset
    from optileuk.data._cache import cached

    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path))
    rng = np.random.default_rng(0)
    ds = Dataset([rng.integers(0, 255, (h, w, 3), dtype=np.uint8) for h, w in ((5, 7), (9, 4), (5, 7))],
                 np.array([0, 1, 0]), ["a", "b"], masks=[np.zeros((5, 7), np.uint8), np.ones((9, 4), np.uint8),
                                                         np.zeros((5, 7), np.uint8)],
                 groups=np.array(["p1", "p2", "p1"]), paths=["x", "y", "z"], name="n", extras={"c": [(1, 2), None, [3]]})
    cached("t", {"k": 1}, lambda: ds)
    back = cached("t", {"k": 1}, lambda: pytest.fail("built again"))
    assert all(np.array_equal(a, b) for a, b in zip(back.images, ds.images))
    assert all(np.array_equal(a, b) for a, b in zip(back.masks, ds.masks))
    assert back.labels.tolist() == [0, 1, 0] and back.classes == ["a", "b"] and back.groups.tolist() == ["p1", "p2", "p1"]
    assert back.paths == ["x", "y", "z"] and back.name == "n" and back.extras == {"c": [(1, 2), None, [3]]}
    same = Dataset([np.full((4, 4, 3), i, np.uint8) for i in range(3)], np.array([0, 1, 1]), ["a", "b"])
    cached("t", {"k": 2}, lambda: same)
    assert [int(x[0, 0, 0]) for x in cached("t", {"k": 2}, lambda: None).images] == [0, 1, 2]


def test_a_dataset_cache_holding_a_pickle_is_refused_and_nothing_runs(workdir, tmp_path, monkeypatch):
    """The dataset cache is data too: a pickle planted where a cache entry goes is refused, exit 2."""
    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path / "cache"))
    study = write(workdir / "s.yaml", """
        name: cached
        objective: {type: handcrafted, dataset: {type: synthetic, n_per_class: 12, size: 32}, split: {folds: 3}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 10, log: true}}}
        optimizer: {name: random, population: 2}
        budget: {trials: 2}
        """)
    r = run_cli("run", str(study), "-q", cwd=workdir, env={"OPTILEUK_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 0, r.stderr
    entries = sorted((tmp_path / "cache").glob("*.npz"))
    assert entries and all(plain.load(p) is not None for p in entries)
    marker = tmp_path / "pwned"
    for p in entries:
        p.write_bytes(pickle.dumps(Boom(str(marker))))
    (workdir / "optileuk.db").unlink()
    r = run_cli("run", str(study), "-q", cwd=workdir, env={"OPTILEUK_CACHE": str(tmp_path / "cache")})
    assert r.returncode == 2 and "never loads pickles" in r.stderr and str(tmp_path / "cache") in r.stderr, r.stderr
    assert "Traceback" not in r.stderr and not marker.exists()
    assert "cached" not in [s.study_name for s in open_storage(f"sqlite:///{workdir}/optileuk.db").get_all_studies()]


# ---- the run state in the storage ---------------------------------------------------------------
def _study(workdir, box_space, name="st", trials=24, optimizer="{name: ga, population: 6}", extra=""):
    return write(workdir / f"{name}.yaml", f"""
        name: {name}
        seed: 2
        storage: sqlite:///{workdir}/st.db
        objective: {{type: analytic, function: rastrigin}}
        search_space: {box_space}
        optimizer: {optimizer}
        budget: {{trials: {trials}}}
        {extra}
        """)


def test_the_saved_state_is_data_with_a_format_version(workdir, box_space):
    path = _study(workdir, box_space)
    Runner(load_study(path)).run()
    storage = open_storage(f"sqlite:///{workdir}/st.db")
    saved = storage.get_study_system_attrs(storage.get_study_id_from_name("st"))[STATE_KEY]
    assert saved["format"] == 2 and saved["optimizer"]["format"] == plain.FORMAT
    assert saved["stored"] == 24 and saved["done"] == 24 and saved["generation"] == 4
    assert isinstance(plain.decode(saved["optimizer"])["pop"], list)


def test_a_state_holding_a_pickle_is_refused_and_never_loaded(workdir, box_space):
    path = _study(workdir, box_space)
    assert run_cli("run", str(path), "-q", "--trials", "12", cwd=workdir).returncode == 0
    url = f"sqlite:///{workdir}/st.db"
    storage = open_storage(url)
    sid = storage.get_study_id_from_name("st")
    marker = workdir / "pwned"
    blob = base64.b64encode(zlib.compress(pickle.dumps({"x": Boom(str(marker))}))).decode()
    storage.set_study_system_attr(sid, STATE_KEY, {"generation": 2, "blob": blob})  # how versions before 13 saved it
    before = len(storage.get_all_trials(sid))
    r = run_cli("run", str(path), "-q", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "holds an optimizer state this optileuk does not read" in r.stderr and "--rebuild-state" in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert not marker.exists() and len(storage.get_all_trials(sid)) == before
    assert storage.get_study_system_attrs(sid)[STATE_KEY]["blob"] == blob  # nothing written
    r = run_cli("run", str(path), "-q", "--rebuild-state", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "24 finished (this run: 12 evaluated, 12 reused" in r.stdout
    assert not marker.exists()
    assert storage.get_study_system_attrs(sid)[STATE_KEY]["format"] == 2


@pytest.mark.parametrize("damage", ["truncated arrays", "edited tree", "arrays not base64", "missing array"])
def test_a_damaged_state_is_one_clear_message_then_rebuilt(workdir, box_space, damage):
    path = _study(workdir, box_space)
    assert run_cli("run", str(path), "-q", "--trials", "12", cwd=workdir).returncode == 0
    storage = open_storage(f"sqlite:///{workdir}/st.db")
    sid = storage.get_study_id_from_name("st")
    state = storage.get_study_system_attrs(sid)[STATE_KEY]
    opt = dict(state["optimizer"])
    if damage == "truncated arrays":
        raw = base64.b64decode(opt["arrays"])
        opt["arrays"] = base64.b64encode(raw[: len(raw) // 2]).decode()
    elif damage == "edited tree":
        opt["tree"] = {"__tuple__": [1, 2]}  # data, but not this optimizer's state
    elif damage == "missing array":
        opt["tree"] = {"__array__": "no-such-member"}
    else:
        opt["arrays"] = "%%% not base64 %%%"
    storage.set_study_system_attr(sid, STATE_KEY, {**state, "optimizer": opt})
    r = run_cli("run", str(path), "-q", "--trials", "24", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr
    says = "that does not fit ga" if damage == "edited tree" else "this optileuk does not read"
    assert f"holds an optimizer state {says}" in r.stderr and "--rebuild-state" in r.stderr, r.stderr
    r = run_cli("run", str(path), "-q", "--trials", "24", "--rebuild-state", cwd=workdir)
    assert r.returncode == 0 and "24 finished" in r.stdout, r.stderr


@pytest.mark.parametrize("name", ["ga", "pso"])
def test_a_storage_made_by_the_previous_version_is_refused_then_rebuilt(workdir, name):
    """tests/data/legacy_v1: written by optileuk before this change (pickled states)."""
    for f in LEGACY.iterdir():
        shutil.copy(f, workdir / f.name)
    # that version evaluated duplicate candidates again: so do the rebuilt and the straight run here
    ga = workdir / "ga.yaml"
    ga.write_text(ga.read_text().replace("runner: {mode: generational}",
                                         "runner: {mode: generational, reuse_duplicates: false}"))
    r = run_cli("run", f"{name}.yaml", "-q", "--trials", "80", cwd=workdir)
    assert r.returncode == 2 and "--rebuild-state" in r.stderr
    r = run_cli("run", f"{name}.yaml", "-q", "--trials", "80", "--rebuild-state", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "80 finished (this run: 40 evaluated" in r.stdout
    if name == "ga":  # a generational study is replayed exactly: the same 80 trials as one straight run
        assert "40 reused" in r.stdout
        (workdir / "fresh").mkdir()
        shutil.copy(workdir / "ga.yaml", workdir / "fresh" / "ga.yaml")
        assert run_cli("run", "ga.yaml", "-q", "--trials", "80", cwd=workdir / "fresh").returncode == 0
        old = optuna.load_study(study_name="legacy-ga", storage=f"sqlite:///{workdir}/legacy.db").trials
        new = optuna.load_study(study_name="legacy-ga", storage=f"sqlite:///{workdir}/fresh/legacy.db").trials
        assert [t.params for t in old] == [t.params for t in new] and [t.value for t in old] == [t.value for t in new]
    r = run_cli("run", f"{name}.yaml", "-q", "--trials", "90", cwd=workdir)  # from now on a plain re-run goes on
    assert r.returncode == 0 and "90 finished" in r.stdout, r.stderr


def test_resume_reads_only_the_trials_after_the_saved_state(workdir, box_space, monkeypatch):
    from optileuk.runner import _past

    path = _study(workdir, box_space, trials=60)
    straight = Runner(load_study(path, storage=f"sqlite:///{workdir}/straight.db")).run()
    Runner(load_study(path, trials=30)).run()
    seen = []
    real = _past.read_trials
    monkeypatch.setattr(_past, "read_trials", lambda *a, **k: seen.append(k.get("from_number")) or real(*a, **k))
    resumed = Runner(load_study(path)).run()
    assert seen == [30]
    assert resumed.best_value == straight.best_value and resumed.trials == 60 and resumed.evaluated == 30


def test_a_generation_cut_by_a_crash_is_read_back_and_reused(workdir, box_space, monkeypatch):
    """Trials written after the last saved state (a generation the crash cut) are the ones read."""
    path = _study(workdir, box_space, trials=60, optimizer="{name: pso, population: 6}")
    straight = Runner(load_study(path, storage=f"sqlite:///{workdir}/straight.db")).run()
    Runner(load_study(path, trials=33)).run()  # the budget cuts generation 6 after 3 of its 6 candidates
    resumed = Runner(load_study(path)).run()
    assert resumed.reused == 3 and resumed.evaluated == 27 and resumed.best_value == straight.best_value


# ---- reading a study without reading every trial ----------------------------------------------------
def _filled(storage) -> int:
    study = optuna.create_study(storage=storage, study_name=f"r{time.time_ns()}")
    dists = {"x": optuna.distributions.FloatDistribution(-1, 1), "c": optuna.distributions.CategoricalDistribution(["a", "b"])}
    for i in range(30):
        state = [optuna.trial.TrialState.COMPLETE, optuna.trial.TrialState.FAIL, optuna.trial.TrialState.PRUNED][i % 3]
        value = {0: (i - 15) / 7.0, 9: float("inf"), 12: float("-inf")}.get(i, (i - 15) / 7.0)
        study.add_trial(optuna.trial.create_trial(
            params={"x": (i % 7) / 7, "c": "ab"[i % 2]}, distributions=dists, state=state,
            value=value if state == optuna.trial.TrialState.COMPLETE else None,
            user_attrs={"generation": i // 6, "note": [i, "x"]}, system_attrs={"optileuk:told": i * 1.5},
            intermediate_values={0: 1.0, 1: i / 2} if state == optuna.trial.TrialState.PRUNED else {}))
    return study._study_id


@pytest.fixture(params=["sqlite", "postgres"])
def rdb_url(request, tmp_path):
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/r.db"
    return request.getfixturevalue("postgres_url")


def test_the_schema_queries_read_what_optunas_public_api_reads(rdb_url):
    storage = open_storage(rdb_url)
    assert _read.rdb_of(storage) is not None
    sid = _filled(storage)
    public = storage.get_all_trials(sid, deepcopy=False)
    key = lambda t: (t.number, t.state, t.values, t.params, t.distributions, t.user_attrs, t.system_attrs,  # noqa: E731
                     t.intermediate_values, t.datetime_start, t.datetime_complete, t._trial_id)
    assert [key(t) for t in _read.read_trials(storage, sid)] == [key(t) for t in public]
    assert [key(t) for t in _read.read_trials(storage, sid, from_number=25)] == [key(t) for t in public[25:]]
    assert [t.number for t in _read.read_trials(storage, sid, numbers=[3, 1, 29])] == [1, 3, 29]
    for maximize in (False, True):
        done = [t for t in public if t.state == optuna.trial.TrialState.COMPLETE]
        want = sorted(done, key=lambda t: ((-t.value if maximize else t.value), t.number))[:4]
        assert [t.number for t in _read.best_trials(storage, sid, 4, maximize=maximize)] == [t.number for t in want]
    c = _read.study_counts(storage)[sid]
    finite = [t.value for t in done if np.isfinite(t.value)]
    assert c.states == {"COMPLETE": 10, "FAIL": 10, "PRUNED": 10} and (c.low, c.high) == (min(finite), max(finite))
    cols = _read.finished_columns(storage, sid)
    assert cols.number.tolist() == list(range(30)) and cols.values == [t.values for t in public]
    assert cols.start == [t.datetime_start for t in public]
    memory = optuna.storages.InMemoryStorage()  # the public-API path gives the same answers
    mid = _filled(memory)
    assert [key(t)[:-3] for t in _read.read_trials(memory, mid, from_number=25)] == [key(t)[:-3] for t in public[25:]]
    assert [t.number for t in _read.best_trials(memory, mid, 4, maximize=True)] == [t.number for t in want]


def test_list_export_and_report_give_the_same_answers_without_reading_every_trial(workdir, box_space, monkeypatch):
    path = _study(workdir, box_space, trials=30)
    Runner(load_study(path)).run()
    url = f"sqlite:///{workdir}/st.db"
    trials = optuna.load_study(study_name="st", storage=url).trials
    best = sorted((t for t in trials if t.value is not None), key=lambda t: t.value)

    def refuse(*a, **k):
        raise AssertionError("read every trial")

    monkeypatch.setattr(optuna.storages.RDBStorage, "get_all_trials", refuse)
    from optileuk.cli._inspect import list_table
    from optileuk.export import export_config

    out = export_config("st", url, top=3)
    assert out["trial"] == best[0].number and [e["trial"] for e in out["top"]] == [t.number for t in best[:3]]
    table = list_table(url)
    assert table.columns[3]._cells == ["30"] and table.columns[5]._cells == [f"{best[0].value:.6g}"]
    from optileuk.report import write_report

    write_report(url, workdir / "r.html")
    assert f"trial {best[0].number}, value {best[0].value:.6g}" in (workdir / "r.html").read_text()


# ---- one driver per study -------------------------------------------------------------------------
def _lease_of(url, name):
    storage = open_storage(url)
    return storage.get_study_system_attrs(storage.get_study_id_from_name(name)).get(LEASE_KEY)


def test_a_second_driver_is_refused_and_a_killed_drivers_lease_is_taken_over(workdir, box_space):
    path = _study(workdir, box_space, trials=40, optimizer="{name: random, population: 2}")
    text = path.read_text().replace("function: rastrigin", "function: rastrigin, sleep: 0.25")
    path.write_text(text)
    url = f"sqlite:///{workdir}/st.db"
    first = subprocess.Popen([optileuk_exe(), "run", str(path), "-q"], cwd=workdir, stdout=subprocess.DEVNULL,
                             stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    try:
        deadline = time.time() + 60
        while time.time() < deadline:
            try:
                lease = _lease_of(url, "st")
            except Exception:  # the study or its database is not there yet
                lease = None
            if lease and lease.get("pid") == first.pid:
                break
            time.sleep(0.2)
        assert lease and lease["host"] == socket.gethostname()
        second = run_cli("run", str(path), "-q", cwd=workdir)
        assert second.returncode == 2 and "Traceback" not in second.stderr
        assert f"is being run by host {socket.gethostname()}, pid {first.pid}, since {lease['since']}" in second.stderr
        time.sleep(1.0)
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
    storage = open_storage(url)
    sid = storage.get_study_id_from_name("st")
    kept = len(storage.get_all_trials(sid))
    assert 0 < kept < 40
    third = run_cli("run", str(path), "-q", cwd=workdir)  # same machine, holder gone: taken over at once
    assert third.returncode == 0, third.stderr
    assert "40 finished" in third.stdout and len(storage.get_all_trials(sid)) == 40
    assert _lease_of(url, "st").get("released") is True


def _sqlite_study(tmp_path):
    url = f"sqlite:///{tmp_path}/l.db"
    storage = open_storage(url)
    sid = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], "l")
    return url, storage, sid


def test_a_live_lease_of_another_machine_is_respected_and_a_stale_one_taken_over(tmp_path):
    url, storage, sid = _sqlite_study(tmp_path)
    other = {"token": "x", "host": "elsewhere", "pid": 1, "since": "2026-01-01T00:00:00+00:00", "beat": time.time()}
    storage.set_study_system_attr(sid, LEASE_KEY, other)
    with pytest.raises(LeaseHeld, match="is being run by host elsewhere, pid 1, since 2026-01-01"):
        Lease(storage, sid, "l", url, "s.yaml").acquire()
    storage.set_study_system_attr(sid, LEASE_KEY, {**other, "beat": time.time() - _lease.STALE_S - 1})
    lease = Lease(storage, sid, "l", url, "s.yaml").acquire()
    assert _lease_of(url, "l")["token"] == lease.token
    lease.release()
    assert _lease_of(url, "l")["released"] is True


def test_the_heartbeat_renews_the_lease_and_a_lost_lease_stops_the_run(tmp_path, monkeypatch):
    monkeypatch.setattr(_lease, "BEAT_S", 0.2)
    url, storage, sid = _sqlite_study(tmp_path)
    lease = Lease(storage, sid, "l", url, "s.yaml").acquire()
    first = _lease_of(url, "l")["beat"]
    time.sleep(0.7)
    assert _lease_of(url, "l")["beat"] > first
    storage.set_study_system_attr(sid, LEASE_KEY, {"token": "thief", "host": "h2", "pid": 9, "since": "now", "beat": time.time()})
    time.sleep(0.7)
    with pytest.raises(LeaseLost, match="was taken over by host h2, pid 9"):
        lease.check()
    lease.release()
    assert _lease_of(url, "l")["token"] == "thief"  # a lost lease is not given back over the new holder's


def test_drivers_starting_together_on_postgres_get_one_lease(postgres_url):
    storage = open_storage(postgres_url)
    sid = storage.create_new_study([optuna.study.StudyDirection.MINIMIZE], f"race{time.time_ns()}")
    won, lost = [], []
    go = threading.Barrier(6)

    def start():
        lease = Lease(open_storage(postgres_url), sid, "race", postgres_url, "s.yaml")
        go.wait()
        try:
            won.append(lease.acquire())
        except LeaseHeld:
            lost.append(lease)

    threads = [threading.Thread(target=start) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(won) == 1 and len(lost) == 5
    won[0].release()


def test_runs_through_the_api_take_and_give_back_the_lease(workdir, box_space):
    path = _study(workdir, box_space, trials=12)
    Runner(load_study(path)).run()
    assert _lease_of(f"sqlite:///{workdir}/st.db", "st")["released"] is True
    Runner(load_study(path, trials=18)).run()  # the next run of the same process takes it again


# ---- paths in study files ----------------------------------------------------------------------------
def test_a_study_file_in_another_folder_finds_its_dataset(workdir):
    from PIL import Image

    rng = np.random.default_rng(0)
    for cls in ("a", "b"):
        (workdir / "project" / "data" / cls).mkdir(parents=True)
        for i in range(8):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(workdir / "project" / "data" / cls / f"{i}.png")
    study = write(workdir / "project" / "studies" / "deep" / "s.yaml", """
        name: elsewhere
        objective: {type: handcrafted, image_size: 24, dataset: {type: folders, path: ../../data}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 10, log: true}}}
        optimizer: {name: random, population: 2}
        budget: {trials: 2}
        """)
    (workdir / "run_here").mkdir()
    r = run_cli("run", str(study), "-q", cwd=workdir / "run_here")
    assert r.returncode == 0, r.stderr
    study.write_text(study.read_text().replace("../../data", "../../nothing"))
    r = run_cli("run", str(study), "-q", cwd=workdir / "run_here")
    assert r.returncode == 2 and f"{workdir / 'project' / 'nothing'}: dataset folder not found" in r.stderr
