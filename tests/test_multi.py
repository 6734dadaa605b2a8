"""Multi-objective studies: objectives in the study file, NSGA-II/III and TPE, Pareto fronts,
hypervolume comparisons, and picking a trade-off for training."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import numpy as np
import optuna
import pytest
import yaml

from conftest import optileuk_exe, run_cli, write
from optileuk import plain
from optileuk.box import Box
from optileuk.config import load_study
from optileuk.errors import ConfigError
from optileuk.registry import OPTIMIZERS
from optileuk.runner import Runner

MULTI = ["nsga2", "nsga3", "optuna_nsga2", "tpe", "random"]


def _box() -> Box:
    kinds = ("real", "real", "int", "choice") + ("binary",) * 4
    return Box(np.array([-5.0, -5.0, 0.0, 0.0, 0, 0, 0, 0]), np.array([5.0, 5.0, 9.5, 3.0, 1, 1, 1, 1]), kinds,
               (0, 0, 0, 3, 0, 0, 0, 0))


def _build(name, seed=0):
    entry, arg = OPTIMIZERS.resolve(name)
    config = entry.make_config({"population": 8} if name != "tpe" else {"population": 4, "n_startup_trials": 8}, arg)
    return entry.build(_box(), config, seed=seed, max_generations=10, objectives=2)


class Two:
    """Two conflicting values: distance to (1, 1) and to (-2, -2) in the first two coordinates."""

    def __init__(self):
        self.seen = []

    def __call__(self, x):
        x = np.atleast_2d(x)
        self.seen.append(x.copy())
        a = ((x[:, :2] - 1) ** 2).sum(1) + 0.1 * x[:, 4:].sum(1)
        b = ((x[:, :2] + 2) ** 2).sum(1) + 0.1 * (1 - x[:, 4:]).sum(1)
        return np.stack([a, b], axis=1)


def _hv(points, ref=(60.0, 60.0)):
    import moocore

    from optileuk.storage import nondominated

    p = np.asarray(points)
    p = p[np.all(p < ref, axis=1)]
    return 0.0 if not len(p) else float(moocore.hypervolume(p[nondominated(p, ["minimize"] * 2)], ref=np.array(ref)))


@pytest.mark.parametrize("name", MULTI)
def test_multi_objective_optimizers_keep_the_contract(name):
    straight, rec1 = _build(name, 3), Two()
    for _ in range(6):
        straight.step(rec1)
    first, rec2 = _build(name, 3), Two()
    for _ in range(3):
        first.step(rec2)
    second = _build(name, 3)
    second.load_state_dict(plain.decode(json.loads(json.dumps(plain.encode(first.state_dict())))))
    for _ in range(3):
        second.step(rec2)
    assert np.array_equal(np.vstack(rec1.seen), np.vstack(rec2.seen))  # state as data continues exactly
    allx = np.vstack(rec1.seen)
    assert np.all(allx >= _box().lower - 1e-9) and np.all(allx <= _box().upper + 1e-9)
    if name != "random":  # the front moves: more hypervolume than the first generation's
        ys = [Two()(x) for x in rec1.seen]
        assert _hv(np.vstack(ys)) > _hv(ys[0])


def test_multi_objective_optimizers_beat_random_search_on_hypervolume():
    """96 evaluations, 3 seeds: the median hypervolume (reference point (12, 12), near the front)."""
    gains = {}
    for name in MULTI:
        hv = []
        for seed in range(3):
            opt, rec = _build(name, seed), Two()
            for _ in range(24 if name == "tpe" else 12):
                opt.step(rec)
            hv.append(_hv(np.vstack([Two()(x) for x in rec.seen])[:96], ref=(12.0, 12.0)))
        gains[name] = np.median(hv)
    assert all(gains[n] > gains["random"] for n in ("nsga2", "nsga3", "optuna_nsga2", "tpe")), gains


# ---- study files ------------------------------------------------------------------------------------------
def _study(workdir, optimizer="{name: nsga2, population: 8}", trials=48, extra="", objectives="[value, f2]"):
    return write(workdir / "mo.yaml", f"""
        name: mo
        seed: 1
        storage: sqlite:///{workdir}/mo.db
        objective: {{type: analytic, function: sphere}}
        objectives: {objectives}
        search_space:
          parameters:
            x0: {{type: float, low: -5, high: 5}}
            x1: {{type: float, low: -5, high: 5}}
            k: {{type: int, low: 0, high: 3}}
            m: {{type: mask, length: 4}}
        optimizer: {optimizer}
        budget: {{trials: {trials}}}
        {extra}
        """)


@pytest.mark.parametrize("case,key,rule", [
    ("[value, nope]", "objectives[1]", "must be a value the analytic objective reports (value, f2)"),
    ("[value, value]", "objectives[1]", "is named twice"),
])
def test_objectives_are_checked_with_their_key(workdir, case, key, rule):
    with pytest.raises(ConfigError, match=rf"mo.yaml: {re.escape(key)} {re.escape(rule)}"):
        load_study(_study(workdir, objectives=case))


def test_direction_and_pruner_need_a_single_objective(workdir):
    r = run_cli("run", str(_study(workdir, extra="direction: minimize\n        pruner: {name: median}")), cwd=workdir)
    assert r.returncode == 2 and "direction is for single-objective studies" in r.stderr
    assert "pruner Optuna prunes single-objective studies only" in r.stderr and "Traceback" not in r.stderr
    assert not (workdir / "mo.db").exists() or "mo" not in [s.study_name for s in optuna.get_all_study_summaries(
        f"sqlite:///{workdir}/mo.db")]


def test_a_multi_objective_study_stores_every_value_and_resumes_after_sigkill(workdir):
    path = _study(workdir, trials=80)
    straight = _study(workdir.parent / (workdir.name + "-straight"), trials=80)
    assert run_cli("run", str(straight), "-q", cwd=straight.parent).returncode == 0
    text = path.read_text().replace("function: sphere}", "function: sphere, sleep: 0.05}")
    path.write_text(text)
    proc = subprocess.Popen([optileuk_exe(), "run", str(path), "-q"], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    url = f"sqlite:///{workdir}/mo.db"
    deadline = time.time() + 60
    while time.time() < deadline:
        try:
            if len(optuna.load_study(study_name="mo", storage=url).trials) >= 30:
                break
        except Exception:
            pass
        time.sleep(0.2)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    r = run_cli("run", str(path), "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "80 finished" in r.stdout and "Pareto front" in r.stdout and "pick one for training" in r.stdout
    trials = optuna.load_study(study_name="mo", storage=url).trials
    ref = optuna.load_study(study_name="mo", storage=f"sqlite:///{straight.parent}/mo.db").trials
    assert len(trials) == 80 and all(len(t.values) == 2 for t in trials)
    assert [t.params for t in trials] == [t.params for t in ref]  # the same search as without the kill
    assert all(t.values[1] == pytest.approx(sum((t.params[k] - 2.0) ** 2 for k in ("x0", "x1", "k"))) for t in trials)


def test_the_report_hypervolume_is_moocores_and_optunas(workdir):
    from optuna._hypervolume import compute_hypervolume

    from optileuk.report import collect

    for opt in ("{name: nsga2, population: 8}", "{name: random, population: 8}"):
        path = _study(workdir, optimizer=opt, trials=40)
        text = path.read_text().replace("name: mo\n", f"name: cmp.{opt.split()[1].rstrip(',')}.s0\n")
        path.write_text(text)
        Runner(load_study(path)).run()
    (group,) = collect(optuna.storages.RDBStorage(f"sqlite:///{workdir}/mo.db"), "x", "cmp.")
    assert group.multi and len(group.runs) == 2
    all_pts = np.vstack([r.points() for r in group.runs])
    assert np.all(group.ref > all_pts.max(0))  # one reference point for the comparison, worse than every point
    for run in group.runs:
        curve = run.best_so_far()
        pts = run.points()
        complete = [i for i, s in enumerate(run.columns.state) if s == "COMPLETE"]
        for j in (0, len(pts) // 2, len(pts) - 1):
            prefix = pts[: j + 1]
            inside = prefix[np.all(prefix < group.ref, axis=1)]
            assert curve[complete[j]] == pytest.approx(compute_hypervolume(inside, group.ref), rel=1e-9)
        assert np.all(np.diff(curve[~np.isnan(curve)]) >= -1e-12)


def test_export_pick_knee_then_train(workdir):
    write(workdir / "fs.yaml", """
        name: fs-mo
        seed: 0
        objective: {type: feature_selection, features: [handcrafted], classifier: knn,
                    dataset: {type: synthetic, n_per_class: 12, size: 32}, split: {test_size: 0.25, folds: 2}}
        objectives: [error, selected_share]
        search_space: {parameters: {features: {type: mask, length: auto}}}
        optimizer: {name: nsga2, population: 8}
        budget: {trials: 32}
        """)
    r = run_cli("run", "fs.yaml", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    front = optuna.load_study(study_name="fs-mo", storage=f"sqlite:///{workdir}/optileuk.db").best_trials
    r = run_cli("export", "fs-mo", "--pick", "knee", "--top", "50", "-o", "knee.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load((workdir / "knee.yaml").read_text())
    assert data["objectives"] == ["error", "selected_share"] and data["pick"] == "knee"
    assert {e["trial"] for e in data["top"]} == {t.number for t in front}  # --top: the whole front
    vals = np.array([t.values for t in front])
    scaled = (vals - vals.min(0)) / np.where(np.ptp(vals, 0) > 0, np.ptp(vals, 0), 1)
    knee = front[int(np.argmin(np.linalg.norm(scaled, axis=1)))]
    assert data["trial"] == knee.number and data["values"] == dict(zip(data["objectives"], knee.values))
    r = run_cli("train", "knee.yaml", "-o", "run", cwd=workdir)
    assert r.returncode == 0, r.stderr
    metrics = json.loads((workdir / "run" / "metrics.json").read_text())
    assert 0 <= metrics["balanced_accuracy"] <= 1
    worst = max(t.values[0] for t in front)
    r = run_cli("export", "fs-mo", "--pick", f"error<={worst}", cwd=workdir)
    assert r.returncode == 0 and "pick: error<=" in r.stdout
    r = run_cli("export", "fs-mo", "--pick", "error<=-1", cwd=workdir)
    assert r.returncode == 2 and "no point of its Pareto front" in r.stderr
    r = run_cli("export", "fs-mo", "--pick", "speed<=1", cwd=workdir)
    assert r.returncode == 2 and "--pick must be 'knee' or conditions" in r.stderr


def test_the_shipped_multi_objective_study_and_comparison_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    st = load_study(root / "studies" / "dknn_nsga2.yaml")
    assert st.multi and st.file.objectives == ["error", "head_params"] and st.optimizer_name == "nsga2"
    from optileuk.compare import plan_comparison

    plan = plan_comparison([root / "studies" / "compare_multi.yaml"], seeds=None, name=None, storage=None, trials=None)
    assert len(plan.labels) >= 2 and all(r.study().multi for r in plan.runs)

