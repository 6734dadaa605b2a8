"""Evaluation on Dask workers: local clusters, a worker joined by hand, a user's cluster, kills, failures, pruning.

Every test runs real processes (the console script, Dask worker processes) against real storages:
SQLite, a journal file, PostgreSQL and Redis (the last two skip without their servers, and fail
instead in CI).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections import Counter

import optuna
import psutil
import pytest
from optuna.trial import TrialState

from conftest import optileuk_exe, run_cli, write
from optileuk.config import load_study
from optileuk.errors import ConfigError
from optileuk.runner.cluster import device_slots
from optileuk.storage import open_storage

SPACE = "parameters:\n  x0: {type: float, low: -5, high: 5}\n  x1: {type: float, low: -5, high: 5}\n"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study(workdir, name, *, trials=40, sleep=0.05, runner="workers: 2", objective="", optimizer="pso", pop=8,
          extra=""):
    write(workdir / "space.yaml", SPACE)
    return write(workdir / f"{name}.yaml", f"""
        name: {name}
        seed: 3
        objective: {{type: analytic, function: sphere, sleep: {sleep}{', ' + objective if objective else ''}}}
        search_space: space.yaml
        optimizer: {{name: {optimizer}, population: {pop}}}
        budget: {{trials: {trials}}}
        runner: {{{runner}, max_consecutive_failures: 50}}
        {extra}
        """)


def trials_of(url, name):
    try:
        return optuna.load_study(study_name=name, storage=open_storage(url)).get_trials()
    except KeyError:  # not created yet
        return []


def check_complete(url, name, n):
    """Exactly n COMPLETE trials, none RUNNING or WAITING, no candidate stored twice."""
    trials = trials_of(url, name)
    states = Counter(t.state.name for t in trials)
    assert states == {"COMPLETE": n}, states
    keys = Counter(t.user_attrs.get("ask", (t.user_attrs.get("generation"), t.user_attrs.get("batch"),
                                             t.user_attrs.get("index"))) for t in trials)
    assert max(keys.values()) == 1, [k for k, c in keys.items() if c > 1]
    assert all(t.params and t.user_attrs["worker"] for t in trials)
    return trials


def wait_until(what, timeout=120, step=0.05):
    deadline = time.time() + timeout
    while time.time() < deadline:
        got = what()
        if got:
            return got
        time.sleep(step)
    raise AssertionError("timed out waiting")


def driver(path, url, workdir, *args):
    return subprocess.Popen([optileuk_exe(), "run", str(path), "--storage", url, "-q", *args], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)


def gone(pids, timeout=20):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if not [p for p in pids if psutil.pid_exists(p) and psutil.Process(p).status() != psutil.STATUS_ZOMBIE]:
            return True
        time.sleep(0.1)
    return False


@pytest.fixture(params=["sqlite", "journal", "postgresql", "redis"])
def any_storage(request, workdir):
    if request.param == "sqlite":
        return f"sqlite:///{workdir}/optileuk.db"
    if request.param == "journal":
        return f"journal://{workdir}/optileuk.log"
    return request.getfixturevalue({"postgresql": "postgres_url", "redis": "redis_url"}[request.param])


# ---- local clusters ------------------------------------------------------------------------------
def test_two_local_workers_share_the_work_and_leave_nothing_behind(workdir):
    path = study(workdir, "two", trials=40, sleep=0.02)
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "evaluating on Dask LocalCluster" in r.stderr and "2 worker(s) on cpu, cpu" in r.stdout
    trials = check_complete(f"sqlite:///{workdir}/optileuk.db", "two", 40)
    assert len({t.user_attrs["worker"] for t in trials}) == 2  # the work was shared
    assert not [p for p in psutil.process_iter(["cmdline"]) if "two.yaml" in " ".join(p.info["cmdline"] or [])]


@pytest.mark.slow
def test_sigkill_of_a_worker_mid_candidate(workdir, any_storage):
    from distributed import Client

    name, port = f"killw-{abs(hash(any_storage)) % 10**6}", free_port()
    path = study(workdir, name, trials=40, sleep=0.3, runner=f"workers: 2, listen: '127.0.0.1:{port}'")
    proc = driver(path, any_storage, workdir)
    wait_until(lambda: len(trials_of(any_storage, name)) >= 4 or proc.poll() is not None)
    with Client(f"tcp://127.0.0.1:{port}", timeout=30, set_as_default=False) as client:
        busy = wait_until(lambda: [w for w, keys in client.processing().items() if keys], step=0.01)
        victim = client.run(os.getpid, workers=[busy[0]])[busy[0]]
        os.kill(victim, signal.SIGKILL)  # while it evaluates a candidate
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    trials = check_complete(any_storage, name, 40)  # the lost candidate was evaluated again, and stored once
    workers = {t.user_attrs["worker"].split(":")[1] for t in trials}
    assert str(victim) in workers and len(workers) >= 3  # the killed worker, its replacement, the other


@pytest.mark.slow
@pytest.mark.parametrize("storage_kind", ["sqlite", "postgresql", "redis"])
def test_sigkill_of_the_driver_then_rerun(workdir, request, storage_kind):
    url = (f"sqlite:///{workdir}/optileuk.db" if storage_kind == "sqlite"
           else request.getfixturevalue({"postgresql": "postgres_url", "redis": "redis_url"}[storage_kind]))
    name = f"killd-{storage_kind}"
    path = study(workdir, name, trials=48, sleep=0.1)
    proc = driver(path, url, workdir)
    wait_until(lambda: len(trials_of(url, name)) >= 16 or proc.poll() is not None)
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    assert len(children) >= 2
    os.kill(proc.pid, signal.SIGKILL)  # the driver alone: its workers must not outlive it
    proc.communicate()
    assert gone(children), "worker processes outlived their driver"
    before = len(trials_of(url, name))
    assert 16 <= before < 48
    r = run_cli("run", str(path), "--storage", url, cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    check_complete(url, name, 48)
    assert f"{48 - before} evaluated" in r.stdout  # nothing finished was evaluated again


def test_a_fifth_of_candidates_fail_and_the_study_completes(workdir):
    path = study(workdir, "flaky", trials=60, sleep=0.0, objective="fail_rate: 0.2")
    url = f"sqlite:///{workdir}/optileuk.db"
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    trials = trials_of(url, "flaky")
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(trials) == 60 and 4 <= len(failed) <= 25
    assert all(t.user_attrs["error"].startswith("RuntimeError: injected failure") for t in failed)
    assert all("optileuk:told" in t.system_attrs for t in failed)  # the optimizer was given a penalty


def test_a_pruner_prunes_with_two_workers(workdir):
    path = study(workdir, "pruned", trials=40, sleep=0.08, objective="steps: 4",
                 extra="pruner: {name: median, n_startup_trials: 4, n_warmup_steps: 0}")
    url = f"sqlite:///{workdir}/optileuk.db"
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    trials = trials_of(url, "pruned")
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(trials) == 40 and pruned
    assert len({t.user_attrs["worker"] for t in trials}) == 2
    for t in pruned:  # stopped early; the optimizer was told the last reported value
        assert len(t.intermediate_values) < 4
        assert t.system_attrs["optileuk:told"] == pytest.approx(t.intermediate_values[max(t.intermediate_values)])
        assert t.user_attrs["pruned"].startswith("pruned after step")
    assert all(len(t.intermediate_values) == 4 for t in trials if t.state == TrialState.COMPLETE)


def test_a_dask_worker_started_by_hand_joins_the_drivers_cluster(workdir):
    port = free_port()
    path = study(workdir, "joined", trials=40, sleep=0.25, runner=f"workers: 1, listen: ':{port}'")
    remote = subprocess.Popen([sys.executable, "-m", "dask", "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1",
                               "--no-nanny", "--death-timeout", "60"], cwd=workdir, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL, env={**os.environ, "OPTILEUK_DEVICE": "cpu"})
    try:
        r = run_cli("run", str(path), cwd=workdir, timeout=300)
        assert r.returncode == 0, r.stderr
        trials = check_complete(f"sqlite:///{workdir}/optileuk.db", "joined", 40)
        assert any(t.user_attrs["worker"].endswith(f":{remote.pid}:cpu") for t in trials)  # it took part
        assert len({t.user_attrs["worker"] for t in trials}) == 2
    finally:
        remote.terminate()
        remote.wait(timeout=30)


def test_a_cluster_the_user_started(workdir):
    port = free_port()
    dask = [sys.executable, "-m", "dask"]
    scheduler = subprocess.Popen([*dask, "scheduler", "--host", "127.0.0.1", "--port", str(port), "--no-dashboard"],
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    workers = [subprocess.Popen([*dask, "worker", f"tcp://127.0.0.1:{port}", "--nthreads", "1", "--no-nanny",
                                 "--death-timeout", "60"], cwd=workdir, stdout=subprocess.DEVNULL,
                                stderr=subprocess.DEVNULL) for _ in range(2)]
    try:
        path = study(workdir, "theirs", trials=24, sleep=0.05, runner="max_consecutive_failures: 5")
        r = run_cli("run", str(path), "--scheduler", f"tcp://127.0.0.1:{port}", cwd=workdir, timeout=300)
        assert r.returncode == 0, r.stderr
        assert f"Dask scheduler tcp://127.0.0.1:{port}" in r.stdout
        trials = check_complete(f"sqlite:///{workdir}/optileuk.db", "theirs", 24)
        assert {t.user_attrs["worker"].split(":")[1] for t in trials} <= {str(w.pid) for w in workers}
    finally:
        for p in (*workers, scheduler):
            p.terminate()
            p.wait(timeout=30)


def test_an_unreachable_scheduler_is_a_user_error_and_writes_nothing(workdir):
    path = study(workdir, "nowhere", trials=4, runner="max_consecutive_failures: 5")
    r = run_cli("run", str(path), "--scheduler", f"tcp://127.0.0.1:{free_port()}", cwd=workdir, timeout=120)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "nowhere.yaml: runner.scheduler cannot reach the Dask scheduler" in r.stderr
    assert not (workdir / "optileuk.db").exists()


def test_ctrl_c_stops_the_workers_and_the_rerun_finishes(workdir):
    path = study(workdir, "stopped", trials=40, sleep=0.2)
    url = f"sqlite:///{workdir}/optileuk.db"
    proc = driver(path, url, workdir)
    wait_until(lambda: len(trials_of(url, "stopped")) >= 6 or proc.poll() is not None)
    children = [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
    os.killpg(proc.pid, signal.SIGINT)  # what a terminal's Ctrl+C does: every process of the group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and "run the same command again to resume" in err
    assert "Traceback" not in err
    assert gone(children)
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    check_complete(url, "stopped", 40)


def test_workers_with_the_memory_storage(workdir):
    """The driver is the only writer: even an in-memory storage works with workers."""
    path = study(workdir, "mem", trials=16, sleep=0.0)
    r = run_cli("run", str(path), "--storage", "memory", cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "16 finished" in r.stdout


# ---- asynchronous mode ---------------------------------------------------------------------------
@pytest.mark.slow
def test_async_on_workers_survives_a_driver_kill(workdir):
    path = study(workdir, "asyncd", trials=40, sleep=0.1, optimizer="ga", runner="workers: 2, mode: async")
    url = f"sqlite:///{workdir}/optileuk.db"
    proc = driver(path, url, workdir)
    wait_until(lambda: len(trials_of(url, "asyncd")) >= 14 or proc.poll() is not None)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.communicate()
    before = len(trials_of(url, "asyncd"))
    r = run_cli("run", str(path), cwd=workdir, timeout=300)
    assert r.returncode == 0, r.stderr
    trials = check_complete(url, "asyncd", 40)
    assert f"{40 - before} evaluated" in r.stdout
    assert sorted(t.user_attrs["ask"] for t in trials)[-1] >= 39


# ---- configuration -------------------------------------------------------------------------------
def test_device_slots():
    assert device_slots(["cuda:0", "cuda:1"], 2, None) == ["cuda:0", "cuda:0", "cuda:1", "cuda:1"]
    assert device_slots("cpu", 1, 3) == ["cpu", "cpu", "cpu"]
    assert device_slots(["cuda:0", "cuda:1"], 1, 3) == ["cuda:0", "cuda:1", "cuda:0"]


@pytest.mark.parametrize("runner, needle", [
    ("workers: 2, scheduler: 'tcp://h:8786'", "runner.scheduler uses the workers of that cluster; workers would"),
    ("listen: 'somewhere'", "runner.listen must look like tcp://0.0.0.0:8786, host:port or :port, got 'somewhere'"),
    ("mode: sometimes", "runner.mode"),
])
def test_runner_settings_are_checked(workdir, runner, needle):
    path = study(workdir, "bad", runner=runner)
    with pytest.raises(ConfigError, match=needle):
        load_study(path)


def test_cuda_devices_this_machine_lacks_are_refused_before_anything_runs(workdir):
    import torch

    n = torch.cuda.device_count()
    path = study(workdir, "nogpu", runner=f"devices: ['cuda:{n}']")
    r = run_cli("run", str(path), cwd=workdir, timeout=120)
    assert r.returncode == 2 and f"runner.devices names CUDA devices this machine does not have ({n} CUDA" in r.stderr
    assert not (workdir / "optileuk.db").exists()


@pytest.mark.skipif("not __import__('torch').cuda.is_available()", reason="needs a CUDA device")
def test_one_worker_per_gpu_each_pinned_to_its_device(workdir):
    import torch

    n = torch.cuda.device_count()
    write(workdir / "space.yaml", "parameters:\n  lr: {type: float, low: 1.0e-3, high: 1.0e-2, log: true}\n")
    path = write(workdir / "gpu.yaml", f"""
        name: gpu
        objective: {{type: dknn, dataset: {{type: synthetic, n_per_class: 20}}, defaults: {{epochs: 1}}}}
        search_space: space.yaml
        optimizer: {{name: random, population: {2 * n}}}
        budget: {{trials: {2 * n}}}
        runner: {{devices: auto, trials_per_device: 2}}
        """)
    r = run_cli("run", str(path), cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    trials = trials_of(f"sqlite:///{workdir}/optileuk.db", "gpu")
    assert {t.user_attrs["device"] for t in trials} == {"cuda:0"}  # each worker sees only its own GPU
    assert len({t.user_attrs["worker"] for t in trials}) == 2 * n


def test_local_workers_start_with_their_own_threads_device_and_glibc_defaults(workdir):
    """Dask's nanny sets MALLOC_TRIM_THRESHOLD_ in workers (torch training ran 2.1x slower), and writes
    its settings into the driver's environment, where a second cluster used to pick them up."""
    from optileuk.runner.cluster import SPAWN_VARS, DaskExecutor, ObjectiveSpec

    st = load_study(study(workdir, "env", runner="workers: 2"), storage="memory")
    spec = ObjectiveSpec(st.objective_cls, st.objective_config, st.space, 0)
    keys = ("MALLOC_TRIM_THRESHOLD_", "OMP_NUM_THREADS", "OPTILEUK_DEVICE", "CUDA_VISIBLE_DEVICES")
    driver_env = {k: os.environ.get(k) for k in SPAWN_VARS}
    cores = os.cpu_count() or 1
    for slots in (["cpu"], ["cpu", "cpu"]):  # one cluster after another in the same driver
        with DaskExecutor(spec, "env-test", slots=slots) as ex:
            seen = ex.client.run(lambda: tuple(os.environ.get(k) for k in keys))
            assert {k: os.environ.get(k) for k in SPAWN_VARS} == driver_env
        assert list(seen.values()) == [(None, str(max(1, cores // len(slots))), "cpu", "")] * len(slots)
    assert {k: os.environ.get(k) for k in SPAWN_VARS} == driver_env


def test_each_worker_prepares_the_objective_once_and_keeps_it(workdir):
    from optileuk.runner.cluster import DaskExecutor, ObjectiveSpec
    from optileuk.runner._executors import Job

    st = load_study(study(workdir, "once", runner="workers: 2"), storage="memory")
    spec = ObjectiveSpec(st.objective_cls, st.objective_config, st.space, 0)
    with DaskExecutor(spec, "once-test", slots=["cpu", "cpu"]) as ex:
        ex.submit([Job((1, 1, i), {"x0": i / 10, "x1": 0.0}, ({}, {}, {})) for i in range(12)])
        values = sorted(ex.next_done()[1].value for _ in range(12))
        builds = ex.client.run(lambda dask_worker: dask_worker.plugins["once-test"].builds)
    assert values == pytest.approx(sorted((i / 10) ** 2 for i in range(12)))
    assert sorted(builds.values()) == [1, 1]  # both took part, each built its objective once


# ---- workers that die while the cluster starts -------------------------------------------------------
CRASH_ONCE = """
import os


def _first(marker):
    try:
        os.close(os.open(marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY))
        return True
    except FileExistsError:
        return False


def dask_setup(worker):
    where, marker = os.environ["OPTILEUK_TEST_CRASH"].split(":", 1)
    if where == "start" and _first(marker):  # this worker process dies before it has started
        os._exit(3)
    if where == "never":  # no worker can ever start (a CUDA error on every try)
        os.write(2, b"CUDA error: out of memory (simulated)\\n")
        os._exit(5)
    if where == "plugin":  # dies while it sets up optileuk's plugin (out of memory preparing the data)
        from optileuk.runner import cluster as _dask

        real = _dask.ObjectiveHost.setup

        def setup(self, worker):
            if _first(marker):
                os._exit(4)
            return real(self, worker)

        _dask.ObjectiveHost.setup = setup
"""


def _crashing(workdir, where: str) -> dict:
    write(workdir / "crashes" / "optileuk_test_crash.py", CRASH_ONCE)
    return {"OPTILEUK_TEST_CRASH": f"{where}:{workdir / 'crashed'}", "PYTHONPATH": str(workdir / "crashes"),
            "DASK_DISTRIBUTED__WORKER__PRELOAD": '["optileuk_test_crash"]'}


@pytest.mark.parametrize("where", ["start", "plugin"])
@pytest.mark.parametrize("kind", ["sqlite", "journal", "redis"])
def test_a_worker_killed_while_the_cluster_starts_is_started_again(workdir, where, kind, request):
    """(a) a worker process dies before it started, (b) while it sets up the objective: the study
    completes with exactly its budget on both workers, no candidate twice, no traceback."""
    url = {"sqlite": f"sqlite:///{workdir}/optileuk.db", "journal": f"journal://{workdir}/optileuk.log"}.get(kind) \
        or request.getfixturevalue("redis_url")
    path = study(workdir, "crashy", trials=32, sleep=0.25)  # 8 s on one worker: longer than a restart on a busy machine
    r = run_cli("run", str(path), "--storage", url, cwd=workdir, env=_crashing(workdir, where), timeout=300)
    assert r.returncode == 0, r.stderr
    assert (workdir / "crashed").exists()  # a worker did die
    assert "Traceback" not in r.stderr and "never retrieved" not in r.stderr, r.stderr
    trials = check_complete(url, "crashy", 32)
    assert len({t.user_attrs["worker"] for t in trials}) == 2, "the worker was not started again"


def test_a_worker_that_can_never_start_is_one_message_and_exit_1(workdir):
    path = study(workdir, "doomed", trials=8)
    r = run_cli("run", str(path), cwd=workdir, env=_crashing(workdir, "never"), timeout=300)
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("error: no local Dask worker could be started (2 slot(s), 3 tries each)"), last
    assert "CUDA error: out of memory (simulated)" in r.stderr and "__main__" not in last
    assert trials_of(f"sqlite:///{workdir}/optileuk.db", "doomed") == []


def test_an_objective_that_batches_sends_one_task_per_worker_with_the_same_values(workdir):
    """feature_selection scores a population in one evaluate_many call: on Dask a generation goes as
    one task per worker slot (trials of one task share their worker and seconds), values as inline."""
    from optileuk.runner import Runner

    def fs_study(name: str, runner: str):
        return write(workdir / f"{name}.yaml", f"""
            name: {name}
            seed: 0
            objective: {{type: feature_selection, trunk_epochs: 1, widths: [8, 16],
                         dataset: {{type: synthetic, n_per_class: 12, size: 32, smears: 8}},
                         split: {{test_size: 0.2, folds: 2}}}}
            search_space: {{parameters: {{features: {{type: mask, length: auto}}}}}}
            optimizer: {{name: ga, population: 8}}
            budget: {{trials: 16}}
            {runner}
            """)

    url = f"sqlite:///{workdir / 'b.db'}"
    inline = Runner(load_study(fs_study("inline", ""), storage=url)).run()
    dask = Runner(load_study(fs_study("dask", "runner: {workers: 2}"), storage=url)).run()
    assert (inline.trials, dask.trials) == (16, 16)
    by_key = lambda ts: {(t.user_attrs["generation"], t.user_attrs["index"]): t.value for t in ts}  # noqa: E731
    assert by_key(trials_of(url, "dask")) == pytest.approx(by_key(trials_of(url, "inline")))
    for gen in (1, 2):
        tasks = {(t.user_attrs["worker"], t.user_attrs["seconds"]) for t in trials_of(url, "dask")
                 if t.user_attrs["generation"] == gen}
        assert len(tasks) <= 2, tasks  # 8 candidates in at most 2 tasks (2 worker slots)


def test_a_cpu_only_driver_does_not_import_torch_to_count_gpus():
    """devices: auto on a machine without a GPU driver: the slots are the CPU's, torch stays unloaded
    (importing it cost the driver of a CPU-only study 1.4 s of its start)."""
    from optileuk.runner.cluster import _GPU_NODES

    if any(os.path.exists(p) for p in _GPU_NODES) or not sys.platform.startswith("linux"):
        pytest.skip("a GPU driver is here: torch is asked")
    code = ("import sys; from optileuk.runner.cluster import device_slots; "
            "print(device_slots('auto', 1, 2), 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['cpu', 'cpu'] False"


def test_spawned_workers_do_not_rerun_the_console_script(monkeypatch):
    """multiprocessing's spawn re-runs the parent's main module in every local Dask worker; for the
    ``optileuk`` console script that would import the whole CLI (typer, rich, every command) per
    worker. The script is named as optileuk.cli.__main__, which spawn leaves out; a user's own
    script keeps its main module (its plug-ins may live there)."""
    import multiprocessing.spawn
    import types

    from optileuk.cli import _spawned_workers_skip_the_script

    script = types.ModuleType("__main__")
    script.__file__, script.__spec__ = "/somewhere/.venv/bin/optileuk", None
    monkeypatch.setitem(sys.modules, "__main__", script)
    assert "init_main_from_path" in multiprocessing.spawn.get_preparation_data("w")
    _spawned_workers_skip_the_script()
    data = multiprocessing.spawn.get_preparation_data("w")
    assert "init_main_from_path" not in data and data["init_main_from_name"] == "optileuk.cli.__main__"

    own = types.ModuleType("__main__")
    own.__file__, own.__spec__ = "/home/me/my_search.py", None
    monkeypatch.setitem(sys.modules, "__main__", own)
    _spawned_workers_skip_the_script()
    assert multiprocessing.spawn.get_preparation_data("w")["init_main_from_path"] == "/home/me/my_search.py"
