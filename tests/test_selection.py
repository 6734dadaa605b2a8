"""Tuning on small data: repeated folds, standard errors, and selection rules that do better than the argmin
of a noisy estimate (one_se, race, anchored, ensemble), resumable, as a user runs them."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import optuna
import pytest
import yaml
from PIL import Image

from conftest import optileuk_exe, run_cli, write

# A small data set's cross-validation, made explicit: sphere(x) plus fold effects shared by every trial
# and noise of each trial on each fold (both sd 1). The defaults sit at the true optimum (0).
NOISY = """
name: noisy
seed: 2
objective: {type: analytic, function: sphere, noise: 1.0, folds: 5, defaults: {x0: 0.0, x1: 0.0}}
search_space:
  parameters:
    x0: {type: float, low: -2, high: 2}
    x1: {type: float, low: -2, high: 2}
optimizer: {name: random}
budget: {trials: 60}
selection: [best, one_se, anchored]
"""

RACE = """
name: raced
seed: 6
objective: {type: analytic, function: sphere, noise: 1.0, folds: 5, SLEEP}
search_space:
  parameters:
    x0: {type: float, low: -2, high: 2}
    x1: {type: float, low: -2, high: 2}
optimizer: {name: random}
budget: {trials: 60}
selection: [{rule: race, top: 5, budget: 1.0}]
"""


def _true(db: Path, name: str, selection: str) -> tuple[int, float]:
    from optileuk.export import export_config

    chosen = export_config(name, f"sqlite:///{db}", selection=selection)
    trial = optuna.load_study(study_name=name, storage=f"sqlite:///{db}").trials[chosen["trial"]]
    return trial.number, trial.user_attrs["true_value"]


@pytest.fixture(scope="module")
def noisy(tmp_path_factory):
    root = tmp_path_factory.mktemp("noisy")
    write(root / "noisy.yaml", NOISY)
    r = run_cli("run", "noisy.yaml", "-q", cwd=root)
    assert r.returncode == 0, r.stderr
    return root, r.stdout


def test_repeated_folds_are_other_grouped_partitions_and_repeat_0_is_the_old_split():
    from optileuk.data import Dataset, SplitConfig, make_splits

    ds = Dataset([np.zeros((2, 2, 3), np.uint8)] * 60, np.arange(60) % 3, ["a", "b", "c"], groups=np.arange(60) // 2)
    one = make_splits(ds, SplitConfig(test_size=0.2, folds=3), seed=4)
    three = make_splits(ds, SplitConfig(test_size=0.2, folds=3, repeats=3), seed=4)
    assert np.array_equal(one.test, three.test) and len(three.folds) == 9 and three.per_repeat == 3
    for a, b in zip(one.folds, three.folds[:3]):  # repeat 0: the split every earlier study used
        assert np.array_equal(a.val, b.val)
    partitions = []
    for r in range(3):
        vals = [f.val for f in three.folds if f.repeat == r]
        assert np.array_equal(np.sort(np.concatenate(vals)), three.search)  # each repeat covers the search part once
        for f in (f for f in three.folds if f.repeat == r):
            assert not set(ds.groups[f.train]) & set(ds.groups[f.val])  # grouped
        partitions.append(tuple(sorted(tuple(v) for v in vals)))
    assert len(set(partitions)) == 3  # different partitions
    assert three.sizes()["repeats"] == 3


def test_a_cross_validated_value_carries_its_folds_and_a_corrected_standard_error():
    from optileuk.folds import corrected_se
    from optileuk.objectives import make

    obj = make("handcrafted", {"dataset": {"type": "synthetic", "n_per_class": 20},
                               "split": {"folds": 3, "repeats": 2}})
    attrs = obj.evaluate({}).attrs
    assert attrs["n_folds"] == 6 and len(attrs["fold_values"]) == 6
    assert np.mean(attrs["fold_values"]) == pytest.approx(1 - attrs["balanced_accuracy"])
    naive = np.std(attrs["fold_values"], ddof=1) / np.sqrt(6)
    assert attrs["value_se"] == pytest.approx(corrected_se(attrs["fold_values"], attrs["val_share"]))
    assert attrs["value_se"] > 1.5 * naive  # overlapping training parts: the plain error is too small


def test_one_se_and_anchored_choose_better_than_the_argmin_of_noise(noisy):
    root, _ = noisy
    lucky, lucky_true = _true(root / "optileuk.db", "noisy", "best")
    assert lucky_true > 0.3  # the argmin is a lucky trial (the scenario these rules are for)
    for rule in ("one_se", "anchored"):
        number, true = _true(root / "optileuk.db", "noisy", rule)
        assert number != lucky and true < lucky_true - 0.3, rule


def test_the_anchor_is_a_counted_trial_with_the_defaults_and_no_params(noisy):
    root, _ = noisy
    trials = optuna.load_study(study_name="noisy", storage=f"sqlite:///{root}/optileuk.db").trials
    anchors = [t for t in trials if t.user_attrs.get("anchor")]
    assert len(trials) == 60 and len(anchors) == 1  # counted in the budget, evaluated once
    assert anchors[0].params == {} and anchors[0].user_attrs["defaults"] == {"x0": 0.0, "x1": 0.0}
    exported = yaml.safe_load(run_cli("export", "noisy", "--selection", "anchored", cwd=root).stdout)
    assert exported["params"] == {"x0": 0.0, "x1": 0.0} and exported["selection"]["rule"] == "anchored"


def test_the_run_summary_says_how_far_the_best_can_be_trusted(noisy):
    _, out = noisy
    assert "standard error" in out and "the defaults" in out and "best - defaults" in out
    assert "warning" in out and "not distinguishable from them" in out


def test_a_race_picks_better_than_the_argmin_and_stores_its_evaluations_apart(workdir):
    write(workdir / "race.yaml", RACE.replace(", SLEEP", ""))
    r = run_cli("run", "race.yaml", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    lucky, lucky_true = _true(workdir / "optileuk.db", "raced", "best")
    number, true = _true(workdir / "optileuk.db", "raced", "race")
    assert number != lucky and true < lucky_true - 0.3
    storage = f"sqlite:///{workdir}/optileuk.db"
    assert len(optuna.load_study(study_name="raced", storage=storage).trials) == 60  # the search's study untouched
    raced = optuna.load_study(study_name="raced.race", storage=storage).trials
    keys = [(t.user_attrs["race"]["of"], t.user_attrs["race"]["repeat"]) for t in raced]
    assert 50 <= len(keys) <= 60 and len(set(keys)) == len(keys)
    again = run_cli("run", "race.yaml", "-q", cwd=workdir)  # finished: nothing evaluated again
    assert again.returncode == 0 and "0 evaluated" in again.stdout
    assert len(optuna.load_study(study_name="raced.race", storage=storage).trials) == len(keys)


def _race_rows(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db) as conn:
            return conn.execute("select count(*) from trials t join studies s on s.study_id = t.study_id "
                                "where s.study_name = 'raced.race'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_a_race_killed_half_way_resumes_without_evaluating_anything_twice(workdir):
    write(workdir / "race.yaml", RACE.replace("SLEEP", "sleep: 0.03"))
    straight = run_cli("run", "race.yaml", "-q", "--storage", f"sqlite:///{workdir}/straight.db", cwd=workdir)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([optileuk_exe(), "run", "race.yaml", "-q"], cwd=workdir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while _race_rows(workdir / "optileuk.db") < 15 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be killed"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    r = run_cli("run", "race.yaml", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr

    def race(db):
        trials = optuna.load_study(study_name="raced.race", storage=f"sqlite:///{db}").trials
        return sorted((t.user_attrs["race"]["of"], t.user_attrs["race"]["repeat"], round(t.value, 12)) for t in trials)

    assert race(workdir / "optileuk.db") == race(workdir / "straight.db")  # the same evaluations, each once
    assert _true(workdir / "optileuk.db", "raced", "race") == _true(workdir / "straight.db", "raced", "race")


def test_greedy_ensemble_selection_beats_its_best_member_where_argmin_cannot():
    from optileuk.selection import greedy

    y = np.repeat([0, 1], 30)
    members = []
    for k in range(3):  # each is wrong on its own third of the cells: a majority vote is never wrong
        pred = y.copy()
        pred[k * 20:(k + 1) * 20] = 1 - pred[k * 20:(k + 1) * 20]
        members.append(pred[None])
    counts, score = greedy(y, members, 3, 2)  # the best single one (the argmin) is right on 2/3 of them
    assert score == 1.0 and counts == [1, 1, 1]


def _ensemble_study(root: Path, trials: int = 16) -> Path:
    return write(root / "ens.yaml", f"""
        name: ens
        seed: 0
        objective:
          type: handcrafted
          dataset: {{type: synthetic, n_per_class: 25, difficulty: 0.7}}
          split: {{test_size: 0.2, folds: 3, repeats: 2}}
        search_space:
          parameters:
            classifier: {{type: categorical, choices: [svm, logreg, knn, rf]}}
            C: {{type: float, low: 0.01, high: 100.0, log: true}}
            n_neighbors: {{type: int, low: 1, high: 15}}
        optimizer: {{name: random}}
        budget: {{trials: {trials}}}
        selection: [{{rule: ensemble, size: 7, library: 16}}]
        """)


def test_an_ensemble_trains_as_one_bundle_without_pickles_and_predict_reproduces_it(workdir):
    _ensemble_study(workdir)
    assert run_cli("run", "ens.yaml", "-q", cwd=workdir).returncode == 0
    r = run_cli("export", "ens", "-o", "best.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    best = yaml.safe_load((workdir / "best.yaml").read_text())
    assert best["selection"]["rule"] == "ensemble:7" and len(best["ensemble"]) >= 2
    assert sum(m["weight"] for m in best["ensemble"]) == pytest.approx(1.0)
    trials = optuna.load_study(study_name="ens", storage=f"sqlite:///{workdir}/optileuk.db").trials
    assert all("oof" in t.user_attrs for t in trials)  # kept for the ensemble
    r = run_cli("train", "best.yaml", "-o", "runs/ens", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    run = workdir / "runs" / "ens"
    meta = json.loads((run / "model.json").read_text())
    assert len(meta["members"]) == len(best["ensemble"]) and not list(run.rglob("*.pkl"))
    from optileuk.data import SyntheticData, load_dataset

    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=25, difficulty=0.7))
    pred = np.load(run / "predictions.npz")
    folder = workdir / "test_images"
    folder.mkdir()
    for i in pred["index"]:
        Image.fromarray(ds.images[i]).save(folder / f"{i:04d}.png")
    r = run_cli("predict", "runs/ens", str(folder), "-o", "out", cwd=workdir)
    assert r.returncode == 0, r.stderr
    rows = (workdir / "out" / "predictions.csv").read_text().splitlines()
    header = rows[0].split(",")
    got = {Path(row.split(",")[header.index("file")]).stem: row.split(",")[header.index("predicted")] for row in rows[1:]}
    want = {f"{i:04d}": ds.classes[p] for i, p in zip(pred["index"], pred["y_pred"])}
    assert got == want
    (run / "members" / "1" / "model.json").write_text((run / "members" / "0" / "model.json").read_text())
    r = run_cli("predict", "runs/ens", str(folder), "-o", "out2", cwd=workdir)
    assert r.returncode == 2 and "members/1" in r.stderr and "Traceback" not in r.stderr


def test_an_ensemble_study_stopped_and_resumed_keeps_every_trial_once_with_its_predictions(workdir):
    from optileuk.config import load_study
    from optileuk.export import export_config
    from optileuk.runner import Runner

    path = _ensemble_study(workdir, trials=12)
    Runner(load_study(path, storage=f"sqlite:///{workdir}/straight.db")).run()
    Runner(load_study(path, trials=5)).run()  # stopped early (a kill: tests/test_optimizers.py) ...
    Runner(load_study(path)).run()  # ... and resumed
    a = optuna.load_study(study_name="ens", storage=f"sqlite:///{workdir}/optileuk.db").trials
    b = optuna.load_study(study_name="ens", storage=f"sqlite:///{workdir}/straight.db").trials
    assert [t.params for t in a] == [t.params for t in b] and len(a) == 12
    assert [t.user_attrs["oof"] for t in a] == [t.user_attrs["oof"] for t in b]
    same = [export_config("ens", f"sqlite:///{workdir}/{db}")["ensemble"] for db in ("optileuk.db", "straight.db")]
    assert same[0] == same[1]


def test_duplicated_images_are_one_group_in_every_split_and_the_summary_says_so(workdir):
    from optileuk.data import FoldersData, SplitConfig, load_dataset, make_splits, outer_parts

    rng = np.random.default_rng(0)
    for c in ("a", "b"):
        (workdir / "cells" / c).mkdir(parents=True)
        for i in range(12):
            Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8)).save(workdir / "cells" / c / f"{c}{i}.png")
    original = workdir / "cells" / "a" / "a3.png"
    (workdir / "cells" / "a" / "a3_copy.png").write_bytes(original.read_bytes())
    ds = load_dataset(FoldersData(type="folders", path=str(workdir / "cells")))
    assert ds.duplicates["exact_sets"] == 1 and ds.duplicates["merged_images"] == 2
    pair = [i for i, p in enumerate(ds.paths) if Path(p).stem in ("a3", "a3_copy")]
    for seed in range(4):
        s = make_splits(ds, SplitConfig(test_size=0.25, folds=3, repeats=2), seed=seed)
        assert (pair[0] in s.test) == (pair[1] in s.test)
        for f in s.folds:
            assert (pair[0] in f.val) == (pair[1] in f.val)
        assert any(set(pair) <= set(p) for p in outer_parts(ds, 4, seed=seed))
    write(workdir / "hand.yaml", f"""
        name: dup
        objective:
          type: handcrafted
          dataset: {{type: folders, path: {workdir / 'cells'}}}
          split: {{test_size: 0.25, folds: 3}}
        search_space: {{parameters: {{C: {{type: float, low: 0.1, high: 10, log: true}}}}}}
        optimizer: {{name: random}}
        budget: {{trials: 2}}
        """)
    r = run_cli("run", "hand.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "2 duplicate images kept in shared groups" in " ".join(r.stdout.split())


def test_assess_compares_selection_rules_on_one_search_and_says_their_optimism(workdir):
    _ensemble_study(workdir, trials=10)
    r = run_cli("assess", "ens.yaml", "--outer", "3", "--untuned", "--selection", "best,one_se,anchored,race,ensemble:3",
                "-o", "a.json", "-q", cwd=workdir, timeout=900)
    assert r.returncode == 0, r.stderr
    s = json.loads((workdir / "a.json").read_text())
    rules = {lab: a["rule"] for lab, a in s["approaches"].items() if a["tuned"]}
    assert rules == {f"ens/{x}": x for x in ("best", "one_se", "anchored", "race", "ensemble:3")}
    assert all(s["approaches"][lab]["optimism"] is not None for lab in rules)
    names = [st for st in optuna.get_all_study_names(f"sqlite:///{workdir}/optileuk.db") if st.startswith("ens.outer")]
    assert sorted(names) == sorted([f"ens.outer{i}of3" for i in range(3)] + [f"ens.outer{i}of3.race" for i in range(3)])
    assert "ens/one_se" in r.stdout and "optimism" in r.stdout
    bad = run_cli("assess", "ens.yaml", "--outer", "3", "--selection", "best,bestest", cwd=workdir)
    assert bad.returncode == 2 and "--selection must be one of best" in bad.stderr and "Traceback" not in bad.stderr


def test_the_anchor_and_the_race_run_on_dask_workers_like_any_candidate(workdir):
    text = NOISY.replace("budget: {trials: 60}", "budget: {trials: 20}\nrunner: {workers: 2}").replace(
        "selection: [best, one_se, anchored]", "selection: [anchored, {rule: race, top: 3, budget: 0.5}]")
    write(workdir / "noisy.yaml", text)
    r = run_cli("run", "noisy.yaml", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    storage = f"sqlite:///{workdir}/optileuk.db"
    trials = optuna.load_study(study_name="noisy", storage=storage).trials
    raced = optuna.load_study(study_name="noisy.race", storage=storage).trials
    assert len(trials) == 20 and sum(bool(t.user_attrs.get("anchor")) for t in trials) == 1
    assert raced and all("worker" in t.user_attrs for t in raced + [t for t in trials if t.user_attrs.get("anchor")])


def test_the_report_shows_the_standard_error_the_defaults_and_the_choice(noisy):
    root, _ = noisy
    r = run_cli("report", "-o", "report.html", cwd=root)
    assert r.returncode == 0, r.stderr
    page = (root / "report.html").read_text()
    assert "Can the best be trusted?" in page and "standard error of the best" in page
    assert "the defaults (trial 0)" in page and "not distinguishable from them" in page
    assert "noisy.race" not in page  # a race is the study's selection, not a run of its own
