"""One contract suite over every registered optimizer (built-ins and entry-point plug-ins alike)."""

from __future__ import annotations

import json
import random

import numpy as np
import pytest

from optileuk import plain
from optileuk.box import Box
from optileuk.optimizers import Optimizer
from optileuk.registry import OPTIMIZERS

NAMES = [n for n in OPTIMIZERS.names() if n not in ("mealpy", "optuna")] + \
    ["mealpy:GWO.OriginalGWO", "mealpy:DE.OriginalDE", "optuna:RandomSampler", "nevergrad:TwoPointsDE"]
SMALL = {"pso": {"population": 6}, "pso_ring": {"population": 6, "k": 2}, "ga": {"population": 6},
         "ssa": {"population": 6}, "sca": {"population": 6}, "tpe": {"population": 3, "n_startup_trials": 4},
         "random": {"population": 6}, "optuna_nsga2": {"population": 6}, "gp": {"population": 1, "n_startup_trials": 10},
         "cmaes": {"population": 6}, "qmc": {"population": 6}}


def _box() -> Box:
    kinds = ("real", "real", "int", "choice") + ("binary",) * 6
    lower = np.array([-5.0, 0.0, 1.5, 0.0] + [0.0] * 6)
    upper = np.array([5.0, 100.0, 9.5, 3.0] + [1.0] * 6)
    return Box(lower, upper, kinds, (0, 0, 0, 3) + (0,) * 6)


def _build(name: str, seed: int = 0, max_generations: int = 20) -> Optimizer:
    entry, arg = OPTIMIZERS.resolve(name)
    config = entry.make_config(SMALL.get(name, {"population": 6}), arg)
    return entry.build(_box(), config, seed=seed, max_generations=max_generations)


def _through_storage(state):
    """A state as the runner stores it: data (never a pickle), through JSON text."""
    return plain.decode(json.loads(json.dumps(plain.encode(state))))


class Recorder:
    """An evaluate() that records every candidate and scores a mixed sphere."""

    def __init__(self):
        self.seen: list[np.ndarray] = []

    def __call__(self, x: np.ndarray) -> np.ndarray:
        x = np.atleast_2d(x)
        self.seen.append(x.copy())
        target = np.array([1.0, 30.0, 4.0, 0.5] + [1, 0, 1, 0, 1, 0])
        return np.sum(((x - target) / (_box().upper - _box().lower)) ** 2, axis=1)


@pytest.mark.parametrize("name", NAMES)
def test_candidates_stay_in_the_box(name):
    opt, rec = _build(name), Recorder()
    for _ in range(5):
        opt.step(rec)
    allx = np.vstack(rec.seen)
    box = _box()
    assert np.all(allx >= box.lower - 1e-9) and np.all(allx <= box.upper + 1e-9)
    assert len(allx) >= 5 * min(3, opt.population_size)


@pytest.mark.parametrize("name", NAMES)
def test_same_seed_same_candidates_and_global_rngs_untouched(name):
    np.random.seed(123)
    random.seed(123)
    before = (np.random.get_state()[1].copy(), random.getstate())
    runs = []
    for _ in range(2):
        opt, rec = _build(name, seed=7), Recorder()
        for _ in range(4):
            opt.step(rec)
        runs.append(np.vstack(rec.seen))
    assert np.array_equal(runs[0], runs[1])
    other, rec = _build(name, seed=8), Recorder()
    for _ in range(4):
        other.step(rec)
    assert not np.array_equal(runs[0][: len(np.vstack(rec.seen))], np.vstack(rec.seen)[: len(runs[0])])
    assert np.array_equal(np.random.get_state()[1], before[0]) and random.getstate() == before[1]


@pytest.mark.parametrize("name", NAMES)
def test_state_dict_continues_exactly(name):
    """Run 6 generations in one go, or 3 + save (as data through JSON, as in storage) + restore in a new object + 3."""
    straight, rec1 = _build(name, seed=3), Recorder()
    for _ in range(6):
        straight.step(rec1)
    first, rec2 = _build(name, seed=3), Recorder()
    for _ in range(3):
        first.step(rec2)
    state = _through_storage(first.state_dict())
    second = _build(name, seed=3)
    second.load_state_dict(state)
    for _ in range(3):
        second.step(rec2)
    assert np.array_equal(np.vstack(rec1.seen), np.vstack(rec2.seen))


@pytest.mark.parametrize("name", NAMES)
def test_improves_on_its_first_generation(name):
    opt, rec = _build(name, seed=1, max_generations=40), Recorder()
    for _ in range(40):
        opt.step(rec)
    values = [rec(x) for x in list(rec.seen)]
    first = float(np.min(values[0]))
    best = float(min(np.min(v) for v in values))
    assert best < first


def test_failed_candidates_get_a_penalty_without_breaking_optimizers():
    for name in NAMES:
        opt = _build(name, seed=0)

        def evaluate(x):
            v = Recorder()(x)
            v[::2] = 1e12  # half the candidates "failed"
            return v

        for _ in range(4):
            opt.step(evaluate)
        assert opt.state_dict() is not None


def test_registry_refuses_duplicate_names():
    from optileuk.errors import OptileukError

    with pytest.raises(OptileukError, match="already registered"):
        OPTIMIZERS.register("pso", object())


def test_unknown_mealpy_algorithm_and_argument_are_config_errors():
    entry, arg = OPTIMIZERS.resolve("mealpy:Nope.Nothing")
    with pytest.raises(ValueError, match="not a mealpy algorithm"):
        entry.make_config({}, arg)
    entry, arg = OPTIMIZERS.resolve("mealpy:DE.OriginalDE")
    with pytest.raises(ValueError, match="'bogus' is not an argument of DE.OriginalDE"):
        entry.make_config({"bogus": 1}, arg)
    assert entry.make_config({"wf": 0.5, "cr": 0.8}, arg).algorithm_kwargs == {"wf": 0.5, "cr": 0.8}


def test_ssa_is_the_salp_swarm():
    entry, _ = OPTIMIZERS.resolve("ssa")
    assert entry.make_config({}).algorithm == "SSO.OriginalSSO"


ASYNC = [n for n in NAMES if _build(n).supports_async]


def _drive(opt: Optimizer, rec: Recorder, n: int, in_flight: list) -> None:
    """Keep three candidates in flight; tell the oldest each round (results come back out of order)."""
    for _ in range(n):
        while len(in_flight) < 3:
            asked = opt.ask()
            if asked is None:
                break
            in_flight.append(asked)
        token, x, _info = in_flight.pop(0 if len(in_flight) % 2 else -1)
        opt.tell(token, float(rec(x)[0]))


def test_async_capable_optimizers_are_the_expected_ones():
    assert set(ASYNC) == {"ga", "optuna_nsga2", "pso", "pso_ring", "random", "tpe", "cmaes", "gp", "qmc",
                          "optuna:RandomSampler", "nevergrad", "nevergrad:TwoPointsDE"}


@pytest.mark.parametrize("name", ASYNC)
def test_async_state_with_candidates_in_flight_continues_identically(name):
    """Saved mid-run with candidates asked and not told, then reloaded: the same run goes on."""
    a, rec_a, fly_a = _build(name), Recorder(), []
    _drive(a, rec_a, 12, fly_a)
    state = _through_storage(a.state_dict())
    assert set(a.pending()) == {t for t, _, _ in fly_a}  # what is in flight is part of the state
    b = _build(name)
    b.load_state_dict(state)
    assert {t: x.tolist() for t, x in b.pending().items()} == {t: x.tolist() for t, x, _ in fly_a}
    fly_b, rec_b = list(fly_a), Recorder()
    _drive(a, rec_a, 10, fly_a)
    _drive(b, rec_b, 10, fly_b)
    assert np.array_equal(np.vstack(rec_a.seen[-10:]), np.vstack(rec_b.seen))
    box = _box()
    allx = np.vstack(rec_a.seen)
    assert np.all(allx >= box.lower - 1e-9) and np.all(allx <= box.upper + 1e-9)


@pytest.mark.parametrize("name", [n for n in ASYNC if n != "random"])  # random search learns nothing
def test_async_inject_learns_from_results_it_did_not_ask_for(name):
    """On resume, trials finished after the last saved state are injected: the optimizer must take them in."""
    opt, rec = _build(name), Recorder()
    _drive(opt, rec, 8, [])
    best = np.array([1.0, 30.0, 4.0, 0.5, 1, 0, 1, 0, 1, 0])
    opt.inject(best, -1.0, {"particle": 0})
    state = opt.state_dict()
    if "value" in state:  # Optuna's samplers: their private study holds it
        assert np.nanmin(state["value"]) == -1.0
    elif "events" in state:  # nevergrad: told, and kept in the log it replays
        assert (state["events"][:, 0] == 2).sum() == 1 and np.allclose(state["x"][state["events"][:, 0] == 2], best)
    elif name == "ga":
        assert [list(g) for g, fit in state["pop"] if fit == (-1.0,)] == [best.tolist()]
    else:
        assert state["swarm"]["best_cost"] == -1.0
        rows = np.atleast_2d(opt._to_box(state["swarm"]["best_pos"]))  # ring: one neighbourhood best per particle
        assert np.all(np.isclose(rows, best), axis=1).any()


@pytest.mark.parametrize("optimizer, trials", [("cmaes", 60), ("qmc", 60), ("nevergrad", 60), ("gp", 16)])
def test_a_killed_run_continues_exactly_as_a_straight_one(tmp_path, optimizer, trials):
    """SIGKILL mid-run, then the same command: the stored trials equal a straight run's, one by one."""
    import os
    import signal
    import sqlite3
    import subprocess
    import time

    import optuna

    from conftest import optileuk_exe, run_cli, write

    extra = ", n_startup_trials: 4" if optimizer == "gp" else ""
    write(tmp_path / "study.yaml", f"""
        name: resumed
        seed: 3
        objective: {{type: analytic, function: rastrigin, sleep: 0.02}}
        search_space: {{parameters: {{x0: {{type: float, low: -5, high: 5}}, x1: {{type: float, low: -5, high: 5}},
                                      k: {{type: int, low: 0, high: 6}}, c: {{type: categorical, choices: [a, b, c]}}}}}}
        optimizer: {{name: {optimizer}, population: 4{extra}}}
        budget: {{trials: {trials}}}
        runner: {{flush_seconds: 0, reuse_duplicates: false}}
        """)
    straight = run_cli("run", "study.yaml", "--storage", f"sqlite:///{tmp_path}/straight.db", "-q", cwd=tmp_path)
    assert straight.returncode == 0, straight.stderr
    db = tmp_path / "optileuk.db"
    proc = subprocess.Popen([optileuk_exe(), "run", "study.yaml", "-q"], cwd=tmp_path, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)

    def count() -> int:
        try:
            with sqlite3.connect(db, timeout=5) as c:
                return c.execute("select count(*) from trials where state='COMPLETE'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0

    deadline = time.time() + 120
    while count() < trials // 2 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert trials // 2 <= count() < trials
    assert run_cli("run", "study.yaml", "-q", cwd=tmp_path).returncode == 0
    a = optuna.load_study(study_name="resumed", storage=f"sqlite:///{db}").trials
    b = optuna.load_study(study_name="resumed", storage=f"sqlite:///{tmp_path}/straight.db").trials
    assert len(a) == len(b) == trials and [t.params for t in a] == [t.params for t in b]
    assert [t.value for t in a] == [t.value for t in b]


def test_cmaes_takes_its_population_from_the_dimension_when_none_is_given():
    entry, _ = OPTIMIZERS.resolve("cmaes")
    opt = entry.build(_box(), entry.make_config({}), seed=0, max_generations=3)
    rec = Recorder()
    opt.step(rec)
    assert opt.population_size == 4 + int(3 * np.log(10)) == len(rec.seen[0])
