"""`optileuk compare` and `optileuk report` as a user runs them; the report rendered in headless
Chromium; optuna-dashboard asked over HTTP which studies it lists."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import time
import urllib.request
import warnings

import numpy as np
import optuna
import pytest
from scipy import stats

from conftest import ROOT, _service_missing, dump_dom, optileuk_exe, run_cli, write
from optileuk.report import holm

LABELS = ["pso", "ga", "tpe", "random"]
SEEDS = [0, 1, 2]
TRIALS = 20

COMPARISON = f"""
    name: sphere
    seed: 0
    seeds: {len(SEEDS)}
    objective: {{type: analytic, function: sphere}}
    search_space: spaces/box4.yaml
    optimizers:
      - {{name: pso, population: 5}}
      - {{name: ga, population: 6}}
      - {{name: tpe, population: 4, n_startup_trials: 8}}
      - {{name: random, population: 5}}
    budget: {{trials: {TRIALS}}}
    references:
      - {{label: corner, params: {{x0: 2.0, x1: 2.0, x2: 2.0, x3: 2.0}}, note: a fixed guess}}
    """


@pytest.fixture(scope="module")
def compared(tmp_path_factory):
    """One comparison (4 optimizers x 3 seeds, two runs at a time) plus two multi-objective Optuna studies."""
    root = tmp_path_factory.mktemp("compare")
    lines = ["parameters:"] + [f"  x{i}: {{type: float, low: -5.12, high: 5.12}}" for i in range(4)]
    write(root / "spaces" / "box4.yaml", "\n".join(lines) + "\n")
    write(root / "cmp.yaml", COMPARISON)
    r = run_cli("compare", "cmp.yaml", "--jobs", "2", cwd=root, timeout=600)
    assert r.returncode == 0, r.stderr
    url = f"sqlite:///{root}/optileuk.db"
    for label, sampler in (("nsga2", optuna.samplers.NSGAIISampler), ("random", optuna.samplers.RandomSampler)):
        for seed in (0, 1):
            st = optuna.create_study(study_name=f"bi.{label}.s{seed}", storage=url,
                                     directions=["minimize", "minimize"], sampler=sampler(seed=seed))
            with warnings.catch_warnings():  # "experimental" since Optuna 3.2
                warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
                st.set_metric_names(["error", "cost"])
            st.optimize(lambda t: ((t.suggest_float("x", 0, 1) - 0.2) ** 2, (t.suggest_float("y", 0, 1) - t.params["x"]) ** 2 + t.params["x"]),
                        n_trials=15)
    solo = optuna.create_study(study_name="solo", storage=url, sampler=optuna.samplers.RandomSampler(seed=0))
    solo.optimize(lambda t: t.suggest_float("a", -1, 1) ** 2 + t.suggest_int("b", 0, 3), n_trials=12)
    return root, url, r


def test_compare_runs_every_optimizer_on_every_seed_as_its_own_study(compared):
    root, url, r = compared
    names = {s.study_name for s in optuna.get_all_study_summaries(url)}
    want = {f"sphere.{lab}.s{seed}" for lab in LABELS for seed in SEEDS}
    assert want <= names
    for name in want:
        study = optuna.load_study(study_name=name, storage=url)
        assert len(study.trials) == TRIALS and all(t.state.name == "COMPLETE" for t in study.trials)
        raw = study.user_attrs["optileuk.study"]
        assert raw["objective_seed"] == 0 and raw["seed"] == int(name.rsplit(".s", 1)[1])  # one data seed, many optimizer seeds
        assert raw["budget"]["trials"] == TRIALS and raw["optimizer"]["name"] == name.split(".")[1]
    # different seeds drive different searches
    first = [optuna.load_study(study_name=f"sphere.pso.s{s}", storage=url).trials[0].params["x0"] for s in SEEDS]
    assert len(set(first)) == len(SEEDS)
    for lab in LABELS:
        assert re.search(rf"^\W*{lab}\b", r.stdout, re.M), r.stdout  # the ranking table
    assert "Friedman test: p =" in r.stdout and "optileuk report" in r.stderr
    # the reference: scored once (sphere at (2, 2, 2, 2) = 16), stored apart, a line under the ranking
    ref = optuna.load_study(study_name="sphere.corner.ref", storage=url)
    assert [t.value for t in ref.trials] == [16.0] and ref.trials[0].user_attrs["params"]["x0"] == 2.0
    # scored with the runs' threads (2 jobs share the cores): training on a CPU depends on the count
    from optileuk.compare import run_threads

    assert ref.trials[0].user_attrs["torch_threads"] == run_threads(2) == max(1, (os.cpu_count() or 1) // 2)
    assert "reference corner: value 16 (" in r.stderr
    beats = {lab: sum(optuna.load_study(study_name=f"sphere.{lab}.s{s}", storage=url).best_value < 16 for s in SEEDS)
             for lab in LABELS}
    line = " ".join(r.stdout.split())
    assert ("reference corner (x0 2.0, x1 2.0, x2 2.0, x3 2.0; a fixed guess): 16; runs better than it: "
            + ", ".join(f"{lab} {beats[lab]}/3" for lab in LABELS)) in line, r.stdout


def test_compare_again_resumes_without_new_trials(compared):
    root, url, _ = compared
    before = sum(len(optuna.load_study(study_name=f"sphere.{lab}.s{s}", storage=url).trials) for lab in LABELS for s in SEEDS)
    r = run_cli("compare", "cmp.yaml", "--jobs", "1", "-q", cwd=root)
    assert r.returncode == 0, r.stderr
    assert "reference corner: value 16 (stored before)" in r.stderr
    assert len(optuna.load_study(study_name="sphere.corner.ref", storage=url).trials) == 1
    after = sum(len(optuna.load_study(study_name=f"sphere.{lab}.s{s}", storage=url).trials) for lab in LABELS for s in SEEDS)
    assert before == after == len(LABELS) * len(SEEDS) * TRIALS


def test_a_reference_stored_with_other_params_is_refused_before_anything_is_written(workdir, box_space):
    cmp = """
        name: box
        seeds: {seeds}
        objective: {{type: analytic, function: sphere}}
        search_space: spaces/box4.yaml
        optimizers: [{{name: random, population: 4}}]
        budget: {{trials: 4}}
        references: [{{label: guess, params: {{x0: {x0}}}}}]
        """
    write(workdir / "cmp.yaml", cmp.format(seeds=1, x0=1.0))
    r = run_cli("compare", "cmp.yaml", "--jobs", "1", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    url = f"sqlite:///{workdir}/optileuk.db"
    before = {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)}
    assert before == {"box.random.s0": 4, "box.guess.ref": 1}
    write(workdir / "cmp.yaml", cmp.format(seeds=2, x0=2.0))  # another guess under the same label, one more seed
    r = run_cli("compare", "cmp.yaml", "--jobs", "1", "-q", cwd=workdir)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: cmp.yaml: references study 'box.guess.ref' in sqlite:///optileuk.db was scored with other "
                                "parameters, objective, data seed or trunk file; give the reference another label or "
                                "delete the old study, got 'guess'")
    assert {s.study_name: s.n_trials for s in optuna.get_all_study_summaries(url)} == before  # no box.random.s1


def test_unfair_study_files_are_refused_before_anything_is_written(workdir, box_space):
    for opt, trials in (("pso", 30), ("ga", 40)):
        write(workdir / f"s_{opt}.yaml", f"""
            name: box-{opt}
            objective: {{type: analytic, function: sphere}}
            search_space: spaces/box4.yaml
            optimizer: {{name: {opt}, population: 6}}
            budget: {{trials: {trials}}}
            """)
    r = run_cli("compare", "s_pso.yaml", "s_ga.yaml", cwd=workdir)
    assert r.returncode == 2
    assert r.stderr.strip() == ("error: s_ga.yaml: budget must be the same as in s_pso.yaml for a fair comparison (same "
                                "objective, data split, search space and budget), got {'trials': 40, 'generations': None, "
                                "'timeout': None}")
    assert not (workdir / "optileuk.db").exists()
    # made fair, the two files compare: the base name is their common prefix
    (workdir / "s_ga.yaml").write_text((workdir / "s_ga.yaml").read_text().replace("40", "30"))
    r = run_cli("compare", "s_pso.yaml", "s_ga.yaml", "--seeds", "2", "--jobs", "1", cwd=workdir)
    assert r.returncode == 0, r.stderr
    names = {s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{workdir}/optileuk.db")}
    assert names == {"box.pso.s0", "box.pso.s1", "box.ga.s0", "box.ga.s1"}


def test_bad_comparison_file_lists_every_problem_and_writes_nothing(workdir, box_space):
    write(workdir / "bad.yaml", """
        name: bad
        seeds: 0
        objective: {type: analytic, function: sphere}
        search_space: spaces/box4.yaml
        optimizers:
          - {name: pso, population: 5}
          - {name: pso, population: 8}
          - {name: nope}
        budget: {trials: 10}
        """)
    r = run_cli("compare", "bad.yaml", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.strip().splitlines()
    assert "error: bad.yaml: seeds must be an integer >= 1, got 0" in lines
    assert ("error: bad.yaml: optimizers[1].label must be unique in the comparison (add label: to tell the entries "
            "apart), got 'pso'") in lines
    assert not (workdir / "optileuk.db").exists()
    write(workdir / "bad2.yaml", COMPARISON.replace("{name: ga, population: 6}", "{name: ga, population: 1}")
          .replace("spaces/box4.yaml", "spaces/box4.yaml"))
    r = run_cli("compare", "bad2.yaml", cwd=workdir)
    assert r.returncode == 2
    assert "error: bad2.yaml: optimizers[1].population must be >= 2, got 1" in r.stderr.splitlines()
    write(workdir / "good.yaml", COMPARISON)
    write(workdir / "badref.yaml", COMPARISON.replace("x1: 2.0,", "y: 2.0,").replace("label: corner", "label: pso"))
    r = run_cli("compare", "badref.yaml", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert ("error: badref.yaml: references[0].label must differ from every other reference's and optimizer's label, "
            "got 'pso'") in r.stderr.splitlines()
    write(workdir / "badref.yaml", COMPARISON.replace("function: sphere}", "function: sphere, shift: 0.5}")
          .replace("{x0: 2.0", "{x0: 2.0, x9: {a: 1}"))
    r = run_cli("compare", "badref.yaml", cwd=workdir)
    assert r.returncode == 2 and "references[0].params values must be numbers, strings or booleans" in r.stderr
    write(workdir / "segref.yaml", """
        name: seg
        objective: {type: segmentation}
        search_space: {parameters: {k: {type: int, low: 2, high: 4}}}
        optimizers: [{name: random, population: 4}, {name: pso, population: 4}]
        budget: {trials: 8}
        references: [{label: two, params: {k: 2, bogus: 1}}]
        """)
    r = run_cli("compare", "segref.yaml", cwd=workdir)
    assert r.returncode == 2 and "error: segref.yaml: references[0].params parameter 'bogus' is not used by the " \
        "segmentation objective" in r.stderr, r.stderr
    assert not (workdir / "optileuk.db").exists()
    r = run_cli("compare", "good.yaml", "--storage", "memory", cwd=workdir)
    assert r.returncode == 2 and r.stderr.strip() == (
        "error: --storage must outlive the command (sqlite, postgresql, journal, redis): the runs are read back "
        "for the ranking and the report, got 'memory'")


def test_report_numbers_match_scipy_on_the_stored_runs(compared, tmp_path):
    root, url, _ = compared
    out = tmp_path / "report.html"
    r = run_cli("report", "--storage", url, "--prefix", "sphere", "-o", str(out), cwd=root)
    assert r.returncode == 0, r.stderr
    page = out.read_text()
    finals = np.array([[optuna.load_study(study_name=f"sphere.{lab}.s{s}", storage=url).best_value for lab in LABELS]
                       for s in SEEDS])
    chi2, p = stats.friedmanchisquare(*finals.T)
    assert f"χ² = {chi2:.4g}, <b>p = {p:.4g}</b>" in page
    ps = [stats.wilcoxon(finals[:, 0], finals[:, j]).pvalue for j in (1, 2, 3)]
    assert "<td>pso vs ga</td>" in page and f"<td>{ps[0]:.4g}</td>" in page
    assert "<script src" not in page  # self-contained: plotly.js is inlined
    assert "bi.nsga2" not in page and "sphere.pso.s0" in page  # --prefix keeps the other studies out


def test_report_refuses_a_missing_storage_or_an_empty_selection(compared, tmp_path):
    root, url, _ = compared
    r = run_cli("report", "--storage", f"sqlite:///{tmp_path}/none.db", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == f"error: storage: 'sqlite:///{tmp_path}/none.db' does not exist (no study has been run there yet)"
    assert not (tmp_path / "none.db").exists()
    r = run_cli("report", "--storage", url, "--prefix", "nope", "-o", str(tmp_path / "r.html"), cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith(f"error: storage: no study starting with 'nope' with finished trials in {url}")
    assert not (tmp_path / "r.html").exists()


def test_holm_adjustment():
    assert holm([0.01, 0.04, 0.03]) == pytest.approx([0.03, 0.06, 0.06])
    assert holm([0.5]) == [0.5]


def test_report_renders_every_plot_in_headless_chromium(compared, tmp_path):
    root, url, _ = compared
    out = tmp_path / "report.html"
    assert run_cli("report", "--storage", url, "-o", str(out), cwd=root).returncode == 0
    dom = dump_dom(out, tmp_path / "chrome")
    figures = re.split(r'<div class="figure" data-kind="', dom)[1:]
    kinds = [f.split('"', 1)[0] for f in figures]
    # the comparison and the plain study "solo": curves, finals, time to target, importances each;
    # the two-objective comparison: Pareto fronts, and hypervolume curves, finals and time to target
    per_study = ["best-so-far", "final-best", "time-to-target", "importance"]
    assert sorted(kinds) == sorted(2 * per_study + ["pareto", "best-so-far", "final-best", "time-to-target"]), kinds
    assert "hypervolume reference point" in dom and "Hypervolume of the front so far" in dom
    assert "Friedman test: one optimizer: nothing to rank" in dom  # solo
    assert "Reference corner (x0 2.0, x1 2.0, x2 2.0, x3 2.0; a fixed guess): value <b>16</b>" in dom
    assert sum(f.split('"', 1)[0] in ("best-so-far", "final-best") and "corner 16" in f for f in figures) == 2
    pareto = figures[kinds.index("pareto")]
    assert ">error<" in pareto and ">cost<" in pareto  # the axes carry the study's metric names
    assert "median attainment" in pareto
    for kind, html in zip(kinds, figures):
        assert 'class="main-svg"' in html, f"{kind}: plotly drew nothing"
        traces = re.findall(r'<g class="trace[ "]', html)
        assert traces, f"{kind}: no trace rendered"
    for kind in ("best-so-far", "final-best", "time-to-target"):  # the comparison's figures show every optimizer
        assert any(all(re.search(rf'class="legendtext"[^>]*>{lab}\b', html) for lab in LABELS)
                   for k, html in zip(kinds, figures) if k == kind), f"{kind}: an optimizer is missing from the legend"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_optuna_dashboard_lists_every_compared_study(compared):
    try:
        import optuna_dashboard
    except ImportError as exc:
        _service_missing("optuna-dashboard (pip install 'optileuk[dashboard]')", str(exc))
    root, url, _ = compared
    port = _free_port()
    proc = subprocess.Popen([optileuk_exe(), "dashboard", "--storage", url, "--port", str(port)], cwd=root,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        deadline, listed = time.time() + 60, None
        while time.time() < deadline and proc.poll() is None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=5) as resp:
                    listed = json.load(resp)
                break
            except OSError:
                time.sleep(0.3)
        assert listed is not None, proc.stderr.read() if proc.poll() is not None else "no answer in 60 s"
        names = {s["study_name"] for s in listed["study_summaries"]}
        assert optuna_dashboard.__version__
        assert {f"sphere.{lab}.s{seed}" for lab in LABELS for seed in SEEDS} <= names
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_a_killed_compare_resumes_without_losing_or_repeating_trials(workdir, box_space):
    write(workdir / "slow.yaml", COMPARISON.replace("function: sphere}", "function: sphere, sleep: 0.02}")
          .replace("name: sphere", "name: slow").replace(f"trials: {TRIALS}", "trials: 30"))
    db = workdir / "optileuk.db"
    proc = subprocess.Popen([optileuk_exe(), "compare", "slow.yaml", "--jobs", "2", "-q"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    deadline = time.time() + 120

    def finished() -> int:
        try:
            return sum(len([t for t in s.get_trials() if t.state.is_finished()])
                       for s in (optuna.load_study(study_name=n.study_name, storage=f"sqlite:///{db}")
                                 for n in optuna.get_all_study_summaries(f"sqlite:///{db}")))
        except Exception:  # the storage is still being created
            return 0

    while finished() < 100 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and its run processes, mid-run
    proc.wait()
    before = finished()
    assert 100 <= before < 12 * 30
    r = run_cli("compare", "slow.yaml", "--jobs", "2", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    for lab in LABELS:
        for seed in SEEDS:
            trials = optuna.load_study(study_name=f"slow.{lab}.s{seed}", storage=f"sqlite:///{db}").trials
            assert len(trials) == 30 and all(t.state.name == "COMPLETE" for t in trials), (lab, seed)
            keys = {(t.user_attrs["generation"], t.user_attrs["batch"], t.user_attrs["index"]) for t in trials}
            assert len(keys) == 30  # no candidate recorded twice


def test_ctrl_c_stops_compare_with_a_resume_hint_and_the_rerun_finishes(workdir, box_space):
    write(workdir / "int.yaml", COMPARISON.replace("function: sphere}", "function: sphere, sleep: 0.05}")
          .replace("name: sphere", "name: int").replace(f"trials: {TRIALS}", "trials: 40"))
    db = f"sqlite:///{workdir}/optileuk.db"
    proc = subprocess.Popen([optileuk_exe(), "compare", "int.yaml", "--jobs", "2", "-q"], cwd=workdir,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if any(s.n_trials >= 10 for s in _summaries(db)):
            break
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl+C sends to the terminal's process group
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted: finished trials are saved; run the same command again to resume" in err
    assert "Traceback" not in err
    r = run_cli("compare", "int.yaml", "--jobs", "2", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert sorted(s.n_trials for s in _summaries(db)) == [40] * len(LABELS) * len(SEEDS)


def _summaries(url: str):
    """The comparison's runs (not its references' studies, ``<base>.<label>.ref``)."""
    try:
        return [s for s in optuna.get_all_study_summaries(url) if not s.study_name.endswith(".ref")]
    except Exception:  # not created yet
        return []


def test_runs_that_keep_failing_stop_alone_and_the_command_says_so(workdir, box_space):
    write(workdir / "fail.yaml", COMPARISON.replace("function: sphere}", "function: sphere, fail_rate: 1.0}")
          .replace("name: sphere", "name: fail") + "runner: {max_consecutive_failures: 3}\n")
    r = run_cli("compare", "fail.yaml", "--seeds", "1", "--jobs", "1", "-q", cwd=workdir)
    assert r.returncode == 1 and "Traceback" not in r.stderr
    assert r.stderr.strip().splitlines()[-1].startswith(
        "error: 4 of 4 runs stopped early: fail.pso.s0, fail.ga.s0, fail.tpe.s0, fail.random.s0 (their finished "
        "trials are stored; run the same command again to resume)")
    failed = optuna.load_study(study_name="fail.pso.s0", storage=f"sqlite:///{workdir}/optileuk.db").trials
    assert failed and all(t.state.name == "FAIL" and t.user_attrs["error"] for t in failed)


def test_a_comparison_on_dask_workers_runs_one_run_at_a_time(workdir, box_space):
    text = COMPARISON.replace("seeds: 3", "seeds: 1").replace(f"trials: {TRIALS}}}", "trials: 8}\n    runner: {workers: 2}")
    write(workdir / "dask.yaml", text)
    r = run_cli("compare", "dask.yaml", "--jobs", "2", cwd=workdir)
    assert r.returncode == 2 and "--jobs must be 1 when the runs evaluate on Dask workers" in r.stderr
    assert not (workdir / "optileuk.db").exists()
    r = run_cli("compare", "dask.yaml", cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    assert "4 runs, 1 at a time" in r.stderr
    storage = f"sqlite:///{workdir}/optileuk.db"
    for label in LABELS:
        trials = optuna.load_study(study_name=f"sphere.{label}.s0", storage=storage).trials
        assert len(trials) == 8 and all(t.user_attrs["worker"].endswith(":cpu") for t in trials)


def test_the_shipped_segmentation_comparison_with_cmaes_and_gp_reports_in_chromium(workdir):
    """studies/compare_segmentation.yaml as shipped (CMA-ES and GP beside ours), shortened: every
    optimizer is a run, and its report draws every one of them."""
    r = run_cli("compare", str(ROOT / "studies" / "compare_segmentation.yaml"), "--seeds", "1", "--trials", "4",
                "--storage", f"sqlite:///{workdir}/c.db", "-q", cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    names = set(optuna.get_all_study_names(f"sqlite:///{workdir}/c.db"))
    assert {f"segmentation.{lab}.s0" for lab in ("pso", "ga", "ssa", "sca", "tpe", "cmaes", "gp")} <= names
    assert run_cli("report", "--storage", f"sqlite:///{workdir}/c.db", "-o", "r.html", cwd=workdir).returncode == 0
    dom = dump_dom(workdir / "r.html", workdir / "chrome")
    curves = re.split(r'<div class="figure" data-kind="', dom)[1:]
    best = next(html for html in curves if html.startswith("best-so-far"))
    for label in ("cmaes", "gp", "pso", "tpe"):
        assert re.search(rf'class="legendtext"[^>]*>{label}\b', best), label
