"""The command line as a user meets it: messages, exit codes, progress, summary, export, SIGKILL."""

from __future__ import annotations

import json
import os
import re
import signal
import sqlite3
import subprocess
import time

import optuna
import pytest
import yaml
from typer.testing import CliRunner

from conftest import ROOT, optileuk_exe, run_cli, write
from optileuk.cli import app

GOOD_SPACE = "parameters:\n  x: {type: float, low: -1, high: 1}\n  y: {type: int, low: 0, high: 4}\n"
GOOD = {
    "name": "bad-input",
    "objective": {"type": "analytic", "function": "sphere"},
    "search_space": "space.yaml",
    "optimizer": {"name": "pso", "population": 5},
    "budget": {"trials": 10},
}


def _with(**changes):
    data = json.loads(json.dumps(GOOD))
    for dotted, value in changes.items():
        keys = dotted.split("__")
        node = data
        for k in keys[:-1]:
            node = node[k]
        if value is _DROP:
            node.pop(keys[-1])
        else:
            node[keys[-1]] = value
    return yaml.safe_dump(data)


_DROP = object()

# (study file text, search-space text, the key path shown, the rule shown)
MALFORMED = {
    "unknown optimizer": (_with(optimizer__name="bees"), GOOD_SPACE, "optimizer.name", "must be one of cmaes, ga, gp, mealpy:<Module>.<Class>, nevergrad[:<name>], nsga2, nsga3, optuna:<SamplerName>, optuna_nsga2, pso"),
    "unknown objective": (_with(objective__type="magic"), GOOD_SPACE, "objective.type", "must be one of analytic"),
    "unknown top-level key": (_with(colour="red"), GOOD_SPACE, "colour", "is not a known key (valid keys: name,"),
    "low > high": (yaml.safe_dump(GOOD), "parameters:\n  x: {type: float, low: 3, high: 1}\n", "parameters.x", "low must be < high, got low=3.0, high=1.0"),
    "population 0": (_with(optimizer__population=0), GOOD_SPACE, "optimizer.population", "must be >= 2, got 0"),
    "population not a number": (_with(optimizer__population="many"), GOOD_SPACE, "optimizer.population", "must be an integer, got 'many'"),
    "YAML syntax error": ("name: x\n  objective: [\n", GOOD_SPACE, "", "is not valid YAML (line 2"),
    "missing search-space file": (_with(search_space="nowhere.yaml"), GOOD_SPACE, "search_space", "must name an existing YAML file"),
    "empty budget": (_with(budget={}), GOOD_SPACE, "budget", "needs at least one of trials, generations, timeout"),
    "zero trials": (_with(budget__trials=0), GOOD_SPACE, "budget.trials", "must be >= 1, got 0"),
    "missing name": (_with(name=_DROP), GOOD_SPACE, "name", "is required"),
    "name with spaces": (_with(name="my study"), GOOD_SPACE, "name", "string should match pattern"),
    "study is a list": ("- name: x\n", GOOD_SPACE, "", "must be a YAML mapping"),
    "empty study file": ("", GOOD_SPACE, "", "must be a YAML mapping"),
    "unknown parameter type": (yaml.safe_dump(GOOD), "parameters:\n  x: {type: vector}\n", "parameters.x.type", "must be one of float, int, categorical, bool, mask, got 'vector'"),
    "empty choices": (yaml.safe_dump(GOOD), "parameters:\n  x: {type: float, low: 0, high: 1}\n  c: {type: categorical, choices: []}\n", "parameters.c.choices", "must have at least 1 item"),
    "int step does not divide": (yaml.safe_dump(GOOD), "parameters:\n  k: {type: int, low: 0, high: 10, step: 4}\n", "parameters.k", "high - low must be a multiple of step"),
    "log with low 0": (yaml.safe_dump(GOOD), "parameters:\n  lr: {type: float, low: 0, high: 1, log: true}\n", "parameters.lr", "low must be > 0 when log is true"),
    "unknown budget key": (_with(budget={"trails": 10}), GOOD_SPACE, "budget.trails", "is not a known key (valid keys: trials, generations, timeout)"),
    "unknown runner key": (_with(runner={"wokers": 2}), GOOD_SPACE, "runner.wokers", "is not a known key (valid keys: mode, workers,"),
    "unknown optimizer key": (_with(optimizer__speed=3), GOOD_SPACE, "optimizer.speed", "is not a known key (valid keys: name, population, w, c1, c2"),
    "unknown objective key": (_with(objective__extra=1), GOOD_SPACE, "objective.extra", "is not a known key (valid keys: type, function, shift, sleep, fail_rate, work, sleep_sigma, sleep_range, steps, noise, folds, repeats, defaults)"),
    "bad analytic function": (_with(objective__function="cube"), GOOD_SPACE, "objective.function", "must be one of 'sphere', 'rastrigin', 'ackley' or 'rosenbrock', got 'cube'"),
    "unknown mealpy algorithm": (_with(optimizer={"name": "mealpy:Foo.Bar"}), GOOD_SPACE, "optimizer", "'Foo.Bar' is not a mealpy algorithm"),
    "bad mealpy argument": (_with(optimizer={"name": "mealpy:DE.OriginalDE", "wings": 2}), GOOD_SPACE, "optimizer", "'wings' is not an argument of DE.OriginalDE"),
    "GA elite >= population": (_with(optimizer={"name": "ga", "population": 4, "elite": 4}), GOOD_SPACE, "optimizer", "elite must be < population"),
    "ring k >= population": (_with(optimizer={"name": "pso_ring", "population": 5, "k": 5}), GOOD_SPACE, "optimizer", "k must be < population"),
    "bad direction": (_with(direction="up"), GOOD_SPACE, "direction", "must be one of 'minimize' or 'maximize', got 'up'"),
    "bad device": (_with(runner={"devices": ["gpu0"]}), GOOD_SPACE, "runner.devices", "each device must be cpu, cuda:N or mps, got 'gpu0'"),
    "negative seed": (_with(seed=-1), GOOD_SPACE, "seed", "must be >= 0, got -1"),
    "seed not a number": (_with(seed="abc"), GOOD_SPACE, "seed", "must be an integer, got 'abc'"),
    "no parameters": (yaml.safe_dump(GOOD), "parameters: {}\n", "parameters", "must be a non-empty mapping"),
    "analytic on categoricals only": (yaml.safe_dump(GOOD), "parameters:\n  c: {type: categorical, choices: [a, b]}\n", "search_space", "must have at least one float or int parameter for the analytic objective"),
    "unknown dknn default": (_with(objective={"type": "dknn", "defaults": {"bogus": 1}}), "parameters:\n  rank1: {type: int, low: 1, high: 2}\n", "objective.defaults.bogus", "is not a dknn parameter"),
    "dknn factor shape that does not fit": (_with(objective={"type": "dknn"}), "parameters:\n  shape1: {type: categorical, choices: [auto, 64x4x128x16]}\n", "search_space", "shape1 '64x4x128x16' must factor the first head layer: m1*m2 = hidden (256), n1*n2 = the trunk's output (64 channels x 4x4 = 1024)"),
    "dknn default factor shape that does not fit": (_with(objective={"type": "dknn", "defaults": {"shape1": "16x16x32x64"}}), "parameters:\n  rank1: {type: int, low: 1, high: 2}\n", "objective.defaults.shape1", "must factor the first head layer: m1*m2 = hidden (256), n1*n2 = the trunk's output (64 channels x 4x4 = 1024), got '16x16x32x64'"),
    "dknn factor rate not above 0": (_with(objective={"type": "dknn", "defaults": {"kron_lr_scale": 0}}), "parameters:\n  rank1: {type: int, low: 1, high: 2}\n", "objective.defaults.kron_lr_scale", "must be a number > 0, got 0"),
    "dknn factor rate searched from 0": (_with(objective={"type": "dknn"}), "parameters:\n  kron_lr_scale: {type: float, low: 0, high: 3}\n", "search_space", "kron_lr_scale must be > 0 (low is 0"),
    "segmentation parameter it does not use": (_with(objective={"type": "segmentation"}), "parameters:\n  colour: {type: categorical, choices: [lab]}\n", "search_space", "parameter 'colour' is not used by the segmentation objective"),
    "unknown selection rule": (_with(selection="bestest"), GOOD_SPACE, "selection", "must be one of best, one_se, race, anchored, ensemble (ensemble:N, race:K), got 'bestest'"),
    "ensemble of a non-classifier": (_with(selection="ensemble:5"), GOOD_SPACE, "selection", "ensemble:5 votes with the out-of-fold predictions of classifiers; the analytic objective records none"),
    "anchored without defaults": (_with(selection="anchored"), GOOD_SPACE, "selection", "anchored compares the search with the objective's defaults; the analytic objective has none"),
    "race of one": (_with(selection={"rule": "race", "top": 1}), GOOD_SPACE, "selection", "top must be >= 2, got 1"),
    "race without folds": (_with(objective={"type": "segmentation"}, selection="race"), "parameters:\n  k: {type: int, low: 2, high: 4}\n", "selection", "race evaluates trials again on new repeats of the folds; the segmentation objective cannot"),
    "unknown key in space file": (yaml.safe_dump(GOOD), "params:\n  x: {type: float, low: 0, high: 1}\n", "params", "is not a known key (valid keys: parameters)"),
}


@pytest.mark.parametrize("case", list(MALFORMED))
def test_malformed_input_gives_one_clear_line_and_exit_2(workdir, case):
    study_text, space_text, key, rule = MALFORMED[case]
    write(workdir / "space.yaml", space_text)
    study = workdir / "study.yaml"
    study.write_text(study_text)
    result = CliRunner().invoke(app, ["run", "study.yaml"])
    assert result.exit_code == 2, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert "Traceback" not in result.output
    # one line names the file, the key path and the rule
    expect_file = "space.yaml" if key.startswith(("parameters", "params")) else "study.yaml"
    expected = f"error: {expect_file}: {key + ' ' if key else ''}{rule}"
    assert any(ln.startswith(expected) for ln in lines), f"{expected!r} not in {lines}"
    # nothing written to the study storage
    assert not (workdir / "optileuk.db").exists()


def test_all_problems_are_reported_at_once(workdir):
    write(workdir / "space.yaml", GOOD_SPACE)
    (workdir / "study.yaml").write_text(_with(seed=-1, optimizer__population=0, budget__trials=0))
    result = CliRunner().invoke(app, ["run", "study.yaml"])
    assert result.exit_code == 2
    assert len(result.stderr.strip().splitlines()) == 3


def test_missing_study_file_via_the_real_console_script(workdir):
    r = run_cli("run", "studies/none.yaml", cwd=workdir)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: studies/none.yaml: study file not found"
    assert not (workdir / "optileuk.db").exists()


def test_unreachable_storage_is_a_user_error(workdir):
    write(workdir / "space.yaml", GOOD_SPACE)
    (workdir / "study.yaml").write_text(yaml.safe_dump(GOOD))
    r = CliRunner().invoke(app, ["run", "study.yaml", "--storage", "postgresql://nobody@127.0.0.1:9/x"])
    assert r.exit_code == 2 and "Traceback" not in r.output
    assert r.stderr.startswith("error: storage: cannot open 'postgresql://nobody@127.0.0.1:9/x'")


@pytest.mark.parametrize("url, says", [
    ("postgres://u:secret@localhost/test", "'postgres://u:***@localhost/test' must start with postgresql:// "
                                           "(SQLAlchemy's name for it): postgresql://u:***@localhost/test"),
    ("sqlite://x.db", "'sqlite://x.db' needs three slashes: sqlite:///x.db (relative to the working folder) or "
                      "sqlite:////absolute/x.db"),
    ("runs.db", "'runs.db' is a file name, not a storage URL: use sqlite:///runs.db"),
])
def test_common_storage_url_mistakes_get_the_right_form(workdir, url, says):
    write(workdir / "space.yaml", GOOD_SPACE)
    (workdir / "study.yaml").write_text(yaml.safe_dump(GOOD))
    r = CliRunner().invoke(app, ["run", "study.yaml", "--storage", url])
    assert r.exit_code == 2 and r.stderr.strip() == f"error: storage: {says}", r.stderr
    assert "secret" not in r.output and not list(workdir.glob("*.db"))


def test_a_nested_unknown_key_lists_its_own_section_and_drops_union_tags(workdir):
    write(workdir / "s.yaml", """
        name: s
        objective: {type: dknn, dataset: {type: synthetic, n_per_clas: 3}, split: {test_sise: 0.2}}
        search_space: {parameters: {rank1: {type: int, low: 1, high: 2}}}
        optimizer: {name: pso}
        budget: {trials: 10}
        """)
    r = run_cli("run", "s.yaml", cwd=workdir)
    assert r.returncode == 2
    assert r.stderr.splitlines() == [
        "error: s.yaml: objective.dataset.n_per_clas is not a known key (valid keys: type, kind, classes, n_per_class, "
        "size, difficulty, smears, red_cells_per_field, seed, realism)",
        "error: s.yaml: objective.split.test_sise is not a known key (valid keys: test_size, folds, repeats, val_size, "
        "grouped, test_fold)"]


@pytest.mark.parametrize("args, says", [
    (["run", "--bogus", "x.yaml"], "error: No such option: --bogus (see 'optileuk run --help')"),
    (["run"], "error: Missing argument 'study'. (see 'optileuk run --help')"),
    (["nosuch"], "error: No such command 'nosuch'. (see 'optileuk --help')"),
    (["run", "x.yaml", "--trials", "abc"], "error: Invalid value for '--trials': "),
])
def test_usage_mistakes_are_one_line_and_exit_2(workdir, args, says):
    r = run_cli(*args, cwd=workdir)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and r.stderr.startswith(says), r.stderr


def test_train_on_a_study_file_says_to_export_first(workdir):
    r = run_cli("train", str(ROOT / "studies" / "rastrigin_pso.yaml"), cwd=workdir)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1, r.stderr
    assert "is a study file; optileuk train takes the config that optileuk export writes" in r.stderr
    assert "optileuk export rastrigin-pso -o best.yaml" in r.stderr


@pytest.mark.parametrize("optimizer", ["pso", "ga", "ssa", "sca", "tpe", "random"])
def test_shipped_analytic_studies_run_with_progress_and_summary(workdir, optimizer):
    r = run_cli("run", str(ROOT / "studies" / f"rastrigin_{optimizer}.yaml"), "--trials", "60", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "60/60" in r.stderr  # the progress bar (trials done/total)
    assert "best value" in r.stdout and "60 finished" in r.stdout
    assert f"sqlite:///optileuk.db (study 'rastrigin-{optimizer}')" in r.stdout
    study = optuna.load_study(study_name=f"rastrigin-{optimizer}", storage=f"sqlite:///{workdir}/optileuk.db")
    trials = study.get_trials()
    assert len(trials) == 60
    assert all(t.state == optuna.trial.TrialState.COMPLETE and len(t.params) == 10 for t in trials)
    assert all(len(t.distributions) == 10 for t in trials)


def test_list_and_export(workdir):
    r = run_cli("run", str(ROOT / "studies" / "mixed_ga.yaml"), "--trials", "48", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run_cli("list", cwd=workdir)
    assert "mixed-ga" in r.stdout and "48" in r.stdout
    r = run_cli("export", "mixed-ga", "-o", "best.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    data = yaml.safe_load((workdir / "best.yaml").read_text())
    study = optuna.load_study(study_name="mixed-ga", storage=f"sqlite:///{workdir}/optileuk.db")
    best = study.best_trial
    assert data["value"] == best.value
    assert data["objective"] == {"type": "analytic", "function": "sphere", "shift": 0.0, "sleep": 0.0, "fail_rate": 0.0,
                                 "work": 0.0, "sleep_sigma": 0.0, "sleep_range": None, "steps": 0, "noise": 0.0,
                                 "folds": 5, "repeats": 1, "defaults": {}}
    for k in ("x0", "x1", "lr", "k", "width", "colour", "fill_holes"):
        assert data["params"][k] == best.params[k]
    assert len(data["params"]["features"]) == best.params["features.n_selected"]  # indices of kept bits
    j = run_cli("export", "mixed-ga", "--format", "json", "--top", "3", cwd=workdir)
    assert [t["value"] for t in json.loads(j.stdout)["top"]] == sorted(t.value for t in study.trials)[:3]
    r = run_cli("export", "nope", cwd=workdir)
    assert r.returncode == 2 and "no study named 'nope'" in r.stderr


def test_list_on_a_missing_storage_creates_nothing(workdir):
    r = run_cli("list", cwd=workdir)
    assert r.returncode == 2 and "does not exist" in r.stderr
    assert not (workdir / "optileuk.db").exists()


def test_dashboard_hint_or_server(workdir):
    r = run_cli("dashboard", "--storage", f"sqlite:///{workdir}/none.db", cwd=workdir, timeout=60)
    assert r.returncode in (1, 2)
    assert "does not exist" in r.stderr or "pip install 'optileuk[dashboard]'" in r.stderr


def _count(db, state="COMPLETE") -> int:
    try:
        with sqlite3.connect(db, timeout=30) as c:
            return c.execute("select count(*) from trials where state=?", (state,)).fetchone()[0]
    except sqlite3.OperationalError:
        return 0


@pytest.mark.parametrize("optimizer", ["pso", "tpe"])
def test_sigkill_then_rerun_finishes_exactly_the_budget(workdir, optimizer):
    pop = "population: 8, n_startup_trials: 8" if optimizer == "tpe" else "population: 8"
    write(workdir / "space.yaml", GOOD_SPACE)
    write(workdir / "study.yaml", f"""
        name: killed
        seed: 5
        objective: {{type: analytic, function: sphere, sleep: 0.03}}
        search_space: space.yaml
        optimizer: {{name: {optimizer}, {pop}}}
        budget: {{trials: 100}}
        runner: {{flush_seconds: 0}}
        """)
    db = workdir / "optileuk.db"
    proc = subprocess.Popen([optileuk_exe(), "run", "study.yaml", "-q"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120
    while _count(db) < 43 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _count(db)
    assert 43 <= before < 100
    r = run_cli("run", "study.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    study = optuna.load_study(study_name="killed", storage=f"sqlite:///{db}")
    trials = study.get_trials()
    assert len(trials) == 100 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    keys = [(t.user_attrs["generation"], t.user_attrs["batch"], t.user_attrs["index"]) for t in trials]
    assert len(set(keys)) == 100  # no candidate recorded twice
    assert f"{100 - before} evaluated" in r.stdout  # no finished trial evaluated again
    # the bar ends where the table says the run ended: trials, best value and generation agree
    rows = _rows(r.stdout)
    bar = [ln for ln in r.stderr.splitlines() if "100/100" in ln][-1]
    assert f"best {study.best_value:.6g}" in bar and f"gen {rows['generations']}" in bar, (bar, rows)
    assert rows["best value"].startswith(f"{study.best_value:.6g} (minimize)")
    again = run_cli("run", "study.yaml", cwd=workdir)  # finished: one line says so, nothing runs
    assert again.returncode == 0 and again.stderr.strip() == (
        "study 'killed' is already complete (100 trials finished, budget trials 100): nothing to run; raise the "
        "budget or pass --trials to go on")
    assert _rows(again.stdout)["generations"] == rows["generations"]


def _rows(stdout: str) -> dict[str, str]:
    """The summary table as {row name: text} (wrapped cells joined)."""
    rows: dict[str, str] = {}
    last = None
    for line in stdout.splitlines():
        cells = [c.strip() for c in line.split("│")[1:-1]]
        if len(cells) != 2:
            continue
        if cells[0]:
            last = cells[0]
            rows[last] = cells[1]
        elif last is not None:
            rows[last] = (rows[last] + " " + cells[1]).strip()
    return rows


def _summary_of(workdir, name: str) -> tuple[optuna.trial.FrozenTrial, dict]:
    study = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/optileuk.db")
    return study.best_trial, study.best_trial.user_attrs


def test_the_dknn_summary_says_what_was_achieved_on_which_split(workdir):
    write(workdir / "d.yaml", """
        name: d
        objective: {type: dknn, dataset: {type: synthetic, n_per_class: 12, size: 32, smears: 8}, image_size: 32,
                    widths: [8, 16], hidden: 16, split: {test_size: 0.25, folds: 1, val_size: 0.25}}
        search_space: {parameters: {rank1: {type: int, low: 1, high: 2}, epochs: {type: int, low: 1, high: 2}}}
        optimizer: {name: random, population: 2}
        budget: {trials: 2}
        """)
    r = run_cli("run", "d.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    best, a = _summary_of(workdir, "d")
    sizes = a["split_sizes"]
    rows = _rows(r.stdout)
    assert rows["best value"] == f"{best.value:.6g} (minimize) = 1 - balanced accuracy"
    assert rows["metrics"] == (f"balanced accuracy {a['balanced_accuracy']:.4g}, accuracy {a['accuracy']:.4g}, "
                               f"macro-F1 {a['macro_f1']:.4g}")
    assert rows["scored on"] == "validation (hold-out of the search part)"
    assert rows["split"] == (f"images: test {sizes['test']} held out ({100 * sizes['test'] / 48:.1f}%), search "
                             f"{sizes['search']} (train {sizes['train']} / validation {sizes['validation']})")
    assert sizes["test"] + sizes["search"] == 48 and sizes["train"] + sizes["validation"] == sizes["search"]
    assert rows["rank1"] == str(best.params["rank1"]) and rows["epochs"] == str(best.params["epochs"])
    assert rows["trials"] == "2 finished (this run: 2 evaluated, 0 reused, 0 failed, 0 pruned)"
    assert re.fullmatch(r"\d+\.\d s \(preparing \d+\.\d s, searching \d+\.\d s\)", rows["time"]), rows["time"]
    # list and export say the same
    r = run_cli("list", cwd=workdir)
    assert re.search(rf"│ d\s+│ random\s+│ minimize\s+│ 2\s+│ 0\s+│ {best.value:.6g}\s+│ 1 - balanced accuracy", r.stdout), r.stdout
    exported = yaml.safe_load(run_cli("export", "d", cwd=workdir).stdout)
    assert exported["value_is"] == "1 - balanced accuracy"
    assert exported["metrics"] == {k: a[k] for k in ("balanced_accuracy", "accuracy", "macro_f1", "value_se", "n_folds",
                                                     "split", "split_sizes")}
    assert rows["standard error"].startswith(f"{a['value_se']:.3g} of the best's value (bootstrap")


def test_the_segmentation_summary_names_its_score_and_shows_active_parameters_only(workdir):
    write(workdir / "g.yaml", f"""
        name: g
        objective: {{type: segmentation, score: mean, max_images: 6}}
        search_space: {ROOT / "search_spaces" / "segmentation.yaml"}
        optimizer: {{name: random, population: 3}}
        budget: {{trials: 3}}
        """)
    r = run_cli("run", "g.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    best, a = _summary_of(workdir, "g")
    rows = _rows(r.stdout)
    assert rows["best value"] == f"{best.value:.6g} (minimize) = 1 - mean of Dice, IoU and SSIM"
    assert rows["metrics"] == f"dice {a['dice']:.4g}, iou {a['iou']:.4g}, ssim {a['ssim']:.4g}"
    assert rows["scored on"] == "search part"
    assert rows["parameters"] == "(the best trial's; inactive ones left out)"
    sizes = a["split_sizes"]
    assert rows["split"] == (f"images: test {sizes['test']} held out "
                             f"({100 * sizes['test'] / (sizes['test'] + sizes['search']):.1f}%), search "
                             f"{sizes['search']} (6 scored, nothing trained)")
    shown = {k for k in rows if k in best.params or k in a["inactive"]}
    assert shown == set(best.params)  # every active parameter, no inactive one


@pytest.mark.slow
def test_the_gpu_study_runs_on_a_dask_worker_here_too(workdir):
    """studies/dknn_pso_gpus.yaml: one worker per GPU, asynchronous PSO; on this machine's CPU without one."""
    r = run_cli("run", str(ROOT / "studies" / "dknn_pso_gpus.yaml"), "--trials", "2", cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "evaluating on Dask LocalCluster" in r.stderr
    trials = optuna.load_study(study_name="dknn-pso-gpus", storage=f"sqlite:///{workdir}/optileuk.db").get_trials()
    assert sorted(t.user_attrs["ask"] for t in trials) == [0, 1]
    import torch

    want = "cuda:0" if torch.cuda.is_available() else "cpu"  # a worker sees only its own GPU
    assert all(t.state == optuna.trial.TrialState.COMPLETE and t.user_attrs["device"] == want for t in trials)


def test_the_main_job_runs_as_the_readme_says(workdir):
    """`optileuk run studies/dknn_pso.yaml` (budget cut to 3 trials to keep the suite short)."""
    r = run_cli("run", str(ROOT / "studies" / "dknn_pso.yaml"), "--trials", "3", cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "3/3" in r.stderr and "best value" in r.stdout
    study = optuna.load_study(study_name="dknn-pso", storage=f"sqlite:///{workdir}/optileuk.db")
    trials = study.get_trials()
    assert len(trials) == 3 and all(t.state == optuna.trial.TrialState.COMPLETE for t in trials)
    best = study.best_trial
    assert 0 <= best.value <= 1 and best.value == pytest.approx(1 - best.user_attrs["balanced_accuracy"])
    assert best.user_attrs["head_params"] > 0 and best.user_attrs["device"] in ("cpu", "cuda")
    exported = yaml.safe_load(run_cli("export", "dknn-pso", cwd=workdir).stdout)
    assert exported["objective"]["type"] == "dknn" and exported["params"]["rank1"] == best.params["rank1"]

    # ... and its best config trained on training + validation, scored once on the test split
    assert run_cli("export", "dknn-pso", "-o", "best.yaml", cwd=workdir).returncode == 0
    r = run_cli("train", "best.yaml", "-o", "final", cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "balanced accuracy" in r.stdout and "confusion matrix" in r.stdout
    from test_train import check_classification

    m = check_classification(workdir / "final")
    assert m["classes"] == ["normal", "L1", "L2", "L3"] and m["facts"]["epochs"] == best.params.get("epochs", 20)
    from safetensors.torch import load_file

    state = {k[4:]: v for k, v in load_file(workdir / "final" / "weights.safetensors").items()}
    from optileuk.objectives import make

    params = yaml.safe_load((workdir / "final" / "config.yaml").read_text())["params"]
    make("dknn", {k: v for k, v in exported["objective"].items() if k != "type"}).build(params, 4).load_state_dict(state)


def test_ctrl_c_ends_with_a_resume_hint_not_a_traceback(workdir):
    write(workdir / "space.yaml", GOOD_SPACE)
    write(workdir / "slow.yaml", """
        name: slow
        objective: {type: analytic, function: sphere, sleep: 0.05}
        search_space: space.yaml
        optimizer: {name: random, population: 5}
        budget: {trials: 400}
        runner: {flush_seconds: 0}
        """)
    proc = subprocess.Popen([optileuk_exe(), "run", "slow.yaml", "-q"], cwd=workdir, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 60
    while _count(workdir / "optileuk.db") < 5 and time.time() < deadline:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)
    out, errtext = proc.communicate(timeout=60)
    assert proc.returncode == 130
    assert "Traceback" not in errtext and "run the same command again to resume" in errtext
    r = run_cli("run", "slow.yaml", "--trials", "20", "-q", cwd=workdir)
    assert r.returncode == 0 and "20 finished" in r.stdout
