"""Parallel evaluation through the storage: local workers, a remote worker, kills, failures."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter

import optuna
from optuna.trial import TrialState

from conftest import optileuk_exe, run_cli, write
from optileuk.storage import open_storage

SPACE = "parameters:\n  x0: {type: float, low: -5, high: 5}\n  x1: {type: float, low: -5, high: 5}\n"


def study(workdir, name, *, trials=200, sleep=0.01, workers=4, extra="", fail_rate=0.0, pop=20):
    write(workdir / "space.yaml", SPACE)
    return write(workdir / f"{name}.yaml", f"""
        name: {name}
        seed: 3
        objective: {{type: analytic, function: sphere, sleep: {sleep}, fail_rate: {fail_rate}}}
        search_space: space.yaml
        optimizer: {{name: pso, population: {pop}}}
        budget: {{trials: {trials}}}
        runner: {{workers: {workers}, heartbeat: 1, max_consecutive_failures: 50}}
        {extra}
        """)


def check_complete(url, name, n):
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    keys = Counter((t.user_attrs["generation"], t.user_attrs["batch"], t.user_attrs["index"]) for t in complete)
    assert len(complete) == n, Counter(t.state.name for t in trials)
    assert max(keys.values()) == 1  # no candidate evaluated to completion twice
    assert all(t.params for t in complete)
    return trials


def test_four_local_workers_on_sqlite(workdir):
    path = study(workdir, "par-sqlite")
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    trials = check_complete(f"sqlite:///{workdir}/optileuk.db", "par-sqlite", 200)
    workers = Counter(t.user_attrs["worker"] for t in trials)
    assert len(workers) >= 2  # the work was shared
    assert not subprocess.run(["pgrep", "-f", "optileuk.cli worker.*par-sqlite"], capture_output=True).stdout


def test_four_local_workers_and_a_remote_worker_on_postgresql(workdir, postgres_url):
    path = study(workdir, "par-pg", sleep=0.02)
    driver = subprocess.Popen([optileuk_exe(), "run", str(path), "--storage", postgres_url, "-q"], cwd=workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    remote = subprocess.Popen([optileuk_exe(), "worker", "--storage", postgres_url, "--study", "par-pg",
                               "--device", "cpu", "--exit-idle", "60"], cwd=workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    _, rerr = remote.communicate(timeout=60)
    assert remote.returncode == 0, rerr
    trials = check_complete(postgres_url, "par-pg", 200)
    remote_tag = f":{remote.pid}:cpu"
    assert any(t.user_attrs["worker"].endswith(remote_tag) for t in trials)


def _pids(pattern):
    out = subprocess.run(["pgrep", "-f", pattern], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_sigkill_of_a_worker_mid_trial(workdir):
    path = study(workdir, "killw", trials=40, sleep=0.4, workers=3, pop=8)
    url = f"sqlite:///{workdir}/optileuk.db"
    driver = subprocess.Popen([optileuk_exe(), "run", str(path), "-q"], cwd=workdir,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, victim = time.time() + 120, None
    while victim is None and time.time() < deadline:
        time.sleep(0.05)
        try:
            busy = [t for t in optuna.load_study(study_name="killw", storage=url).trials
                    if t.state == TrialState.RUNNING and "worker" in t.user_attrs]
        except KeyError:  # the study is not created yet
            continue
        victim = int(busy[0].user_attrs["worker"].split(":")[1]) if busy else None
    assert victim in _pids("optileuk.cli worker.*killw")
    os.kill(victim, signal.SIGKILL)  # mid-trial
    out, err = driver.communicate(timeout=300)
    assert driver.returncode == 0, err
    trials = check_complete(url, "killw", 40)
    stale = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stale) == 1 and not stale[0].user_attrs.get("error")  # failed by the heartbeat check
    retry = [t for t in trials if t.user_attrs.get("retry_of") == stale[0].number]
    assert len(retry) == 1 and retry[0].state == TrialState.COMPLETE


def test_sigkill_of_the_driver_then_rerun(workdir):
    path = study(workdir, "killd", trials=60, sleep=0.1, workers=3, pop=10)
    url = f"sqlite:///{workdir}/optileuk.db"
    driver = subprocess.Popen([optileuk_exe(), "run", str(path), "-q"], cwd=workdir, start_new_session=True,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:
        try:
            done = [t for t in optuna.load_study(study_name="killd", storage=url).trials if t.state.is_finished()]
        except KeyError:  # the study is not created yet
            done = []
        if len(done) >= 25:
            break
        time.sleep(0.1)
    os.killpg(driver.pid, signal.SIGKILL)  # the driver and its local workers
    driver.wait()
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    check_complete(url, "killd", 60)


def test_a_fifth_of_candidates_fail_and_the_study_completes(workdir):
    path = study(workdir, "flaky", trials=80, sleep=0.0, workers=2, fail_rate=0.2)
    url = f"sqlite:///{workdir}/optileuk.db"
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    trials = optuna.load_study(study_name="flaky", storage=url).trials
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 80 and 5 <= len(failed) <= 30
    assert all(t.user_attrs["error"].startswith("RuntimeError: injected failure") for t in failed)


def test_memory_storage_cannot_have_workers(workdir):
    path = study(workdir, "mem", trials=4)
    r = run_cli("run", str(path), "--storage", "memory", cwd=workdir)
    assert r.returncode == 2 and "storage must be shared by processes" in r.stderr


def test_workers_on_the_redis_journal(workdir, redis_url):
    path = study(workdir, "par-redis", trials=40, sleep=0.0, workers=2, pop=8)
    r = run_cli("run", str(path), "--storage", redis_url, cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    check_complete(redis_url, "par-redis", 40)


def test_processes_creating_one_fresh_storage_at_once_all_open_it(tmp_path):
    """A driver and its workers (or compare's run processes) may create a new SQLite file together;
    Optuna's schema creation races (UNIQUE alembic_version, 'table studies already exists')."""
    code = "import sys; from optileuk.storage import open_storage; open_storage(sys.argv[1])"
    for i in range(8):
        url = f"sqlite:///{tmp_path}/fresh{i}.db"
        procs = [subprocess.Popen([sys.executable, "-c", code, url], stderr=subprocess.PIPE, text=True) for _ in range(4)]
        errors = [p.communicate(timeout=120)[1] for p in procs]
        assert all(p.returncode == 0 for p in procs), errors
