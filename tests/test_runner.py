"""The runner: every candidate an Optuna trial, exact budgets, determinism, resume, failures."""

from __future__ import annotations

from typing import Any, Mapping

import optuna
import pytest
from optuna.trial import TrialState

from conftest import write
from optileuk.config import load_study
from optileuk.errors import ConfigError
from optileuk.objectives import Objective, Score
from optileuk.objectives._analytic import AnalyticConfig
from optileuk.registry import OBJECTIVES
from optileuk.runner import RunFailed, Runner
from optileuk.storage import STATE_KEY
from optileuk.storage import open_storage


class FlakyObjective(Objective):
    """Sphere that fails (raises, or returns NaN) where x0 > threshold; registered for these tests."""

    Config = AnalyticConfig  # reuses 'shift' as the failure threshold

    def evaluate(self, config: Mapping[str, Any], *, trial=None) -> Score:
        if config["x0"] > self.config.shift + 1.0:
            return Score(float("nan"))
        if config["x0"] > self.config.shift:
            raise RuntimeError(f"boom at x0={config['x0']:.3f}")
        return Score(float(sum(v * v for v in config.values())), {"note": "ok"})


if OBJECTIVES.resolve("flaky_test") is None:
    OBJECTIVES.register("flaky_test", FlakyObjective)


def study_file(tmp, box_space, *, name="s", optimizer="{name: pso, population: 10}", budget="{trials: 50}",
               objective="{type: analytic, function: sphere}", seed=0, extra=""):
    return write(tmp / f"{name}.yaml", f"""
        name: {name}
        seed: {seed}
        objective: {objective}
        search_space: {box_space}
        optimizer: {optimizer}
        budget: {budget}
        {extra}
        """)


@pytest.mark.parametrize("optimizer", ["pso", "pso_ring", "ga", "ssa", "sca", "tpe", "random", "mealpy:GWO.OriginalGWO"])
def test_every_candidate_is_a_complete_trial_with_distributions(workdir, box_space, optimizer):
    pop = "n_startup_trials: 5, population: 4" if optimizer == "tpe" else "population: 10"
    path = study_file(workdir, box_space, optimizer=f"{{name: '{optimizer}', {pop}}}", budget="{trials: 43}")
    url = f"sqlite:///{workdir}/o.db"
    summary = Runner(load_study(path, storage=url)).run()
    assert summary.trials == 43 and summary.evaluated == 43
    study = optuna.load_study(study_name="s", storage=url)
    trials = study.get_trials()
    assert len(trials) == 43
    assert all(t.state == TrialState.COMPLETE for t in trials)
    assert [t.number for t in trials] == list(range(43))
    for t in trials:
        assert set(t.params) == {f"x{i}" for i in range(4)}
        assert t.distributions["x0"] == optuna.distributions.FloatDistribution(-5.12, 5.12)
        assert t.value == pytest.approx(sum(v * v for v in t.params.values()))
        assert t.user_attrs["optimizer"] == optimizer
        assert {"generation", "batch", "index", "seconds"} <= set(t.user_attrs)
    keys = [(t.user_attrs["generation"], t.user_attrs["batch"], t.user_attrs["index"]) for t in trials]
    assert len(set(keys)) == len(keys)
    assert summary.best_value == pytest.approx(study.best_value)
    # optuna's own tooling works on the study
    assert optuna.importance.get_param_importances(study)
    assert STATE_KEY in study._storage.get_study_system_attrs(study._study_id)


def test_same_file_and_seed_give_identical_trials(workdir, box_space):
    path = study_file(workdir, box_space, optimizer="{name: ga, population: 8}", budget="{trials: 40}")
    runs = []
    for db in ("a", "b"):
        url = f"sqlite:///{workdir}/{db}.db"
        Runner(load_study(path, storage=url)).run()
        runs.append(optuna.load_study(study_name="s", storage=url).trials)
    assert [t.params for t in runs[0]] == [t.params for t in runs[1]]
    assert [t.value for t in runs[0]] == [t.value for t in runs[1]]
    other = Runner(load_study(path, storage="memory", seed=99)).run()
    assert other.best_value != min(t.value for t in runs[0])


def test_budget_is_exact_even_mid_generation(workdir, box_space):
    path = study_file(workdir, box_space, optimizer="{name: pso, population: 20}", budget="{trials: 50}")
    url = f"sqlite:///{workdir}/x.db"
    assert Runner(load_study(path, storage=url)).run().trials == 50
    again = Runner(load_study(path, storage=url)).run()  # nothing left to do
    assert again.trials == 50 and again.evaluated == 0
    more = Runner(load_study(path, storage=url, trials=90)).run()  # a larger budget continues
    assert more.trials == 90 and more.evaluated == 40
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 90


def test_generation_budget(workdir, box_space):
    path = study_file(workdir, box_space, optimizer="{name: ga, population: 6}", budget="{generations: 3}")
    s = Runner(load_study(path, storage="memory")).run()
    assert s.generation == 3 and s.trials <= 18 and s.trials >= 6


def interrupted_at(study, n: int):
    """The study, with an objective whose ``n``-th evaluation is interrupted like Ctrl+C (not a candidate failure)."""
    calls, real = {"n": 0}, study.objective

    def dying():
        obj = real()
        inner = obj.evaluate

        def evaluate(config, *, trial=None):
            calls["n"] += 1
            if calls["n"] == n:
                raise KeyboardInterrupt
            return inner(config, trial=trial)

        obj.evaluate = evaluate
        return obj

    study.objective = dying
    return study


def test_resume_after_an_interrupted_generation_reuses_finished_trials(workdir, box_space):
    """Interrupt in the middle of generation 4 (an exception in the objective's process), resume."""
    path = study_file(workdir, box_space, optimizer="{name: sca, population: 10}", budget="{trials: 80}")
    url = f"sqlite:///{workdir}/r.db"
    straight = f"sqlite:///{workdir}/straight.db"
    Runner(load_study(path, storage=straight)).run()

    study = interrupted_at(load_study(path, storage=url), 36)
    with pytest.raises(KeyboardInterrupt):
        Runner(study, state_every=0).run()
    first = optuna.load_study(study_name="s", storage=url).trials
    assert len(first) == 35
    resumed = Runner(load_study(path, storage=url)).run()
    assert resumed.evaluated == 45 and resumed.reused == 5  # generation 4's first five come back
    final = optuna.load_study(study_name="s", storage=url).trials
    ref = optuna.load_study(study_name="s", storage=straight).trials
    assert len(final) == 80
    assert [t.params for t in final] == [t.params for t in ref]  # the same search as without the crash


def test_failures_are_recorded_and_the_run_goes_on(workdir, box_space):
    path = study_file(workdir, box_space, objective="{type: flaky_test, shift: 1.0}",
                      optimizer="{name: random, population: 10}", budget="{trials: 60}")
    url = f"sqlite:///{workdir}/f.db"
    s = Runner(load_study(path, storage=url)).run()
    trials = optuna.load_study(study_name="s", storage=url).trials
    assert len(trials) == 60 and s.failed > 0
    failed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(failed) == s.failed
    assert all(t.params["x0"] > 1.0 for t in failed)
    errors = {t.user_attrs["error"].split(" ")[0] for t in failed}
    assert errors == {"RuntimeError:", "objective"}  # raised, or returned nan
    assert all(t.value is None for t in failed)
    assert all(t.user_attrs["note"] == "ok" for t in trials if t.state == TrialState.COMPLETE)


def test_consecutive_failures_stop_the_run(workdir, box_space):
    path = study_file(workdir, box_space, objective="{type: flaky_test, shift: -100.0}",
                      optimizer="{name: random, population: 10}", budget="{trials: 60}",
                      extra="runner: {max_consecutive_failures: 7}")
    url = f"sqlite:///{workdir}/c.db"
    with pytest.raises(RunFailed, match="7 consecutive failed candidates"):
        Runner(load_study(path, storage=url)).run()
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 7


def test_a_changed_study_under_the_same_name_is_refused(workdir, box_space):
    url = f"sqlite:///{workdir}/d.db"
    Runner(load_study(study_file(workdir, box_space, budget="{trials: 10}"), storage=url)).run()
    changed = study_file(workdir, box_space, optimizer="{name: ga, population: 10}", budget="{trials: 10}")
    with pytest.raises(ConfigError, match="was made from a different study"):
        Runner(load_study(changed, storage=url)).run()
    assert len(optuna.load_study(study_name="s", storage=url).trials) == 10


def test_images_added_to_the_data_folder_make_a_different_study(workdir):
    """A study's fingerprint holds its images (names and counts): a rerun after cells were added to the
    folder is refused (the splits would move: cells searched on could land in the held-out test
    split), nothing written; with the folder as it was, the study resumes."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(0)
    cell = lambda: Image.fromarray(rng.integers(0, 255, (24, 24, 3), dtype=np.uint8))  # noqa: E731
    for cls in ("blast", "normal"):
        (workdir / "cells" / cls).mkdir(parents=True)
        for i in range(8):
            cell().save(workdir / "cells" / cls / f"c{i}.png")
    write(workdir / "study.yaml", """
        name: cells
        objective: {type: handcrafted, dataset: {type: folders, path: cells}, image_size: 24,
                    split: {test_size: 0.25, folds: 2}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 10, log: true}}}
        optimizer: {name: random, population: 2}
        budget: {trials: 2}
        """)
    url = f"sqlite:///{workdir}/optileuk.db"
    assert Runner(load_study(workdir / "study.yaml")).run().trials == 2
    extra = workdir / "cells" / "blast" / "c8.png"
    cell().save(extra)
    with pytest.raises(ConfigError, match="or its images"):
        Runner(load_study(workdir / "study.yaml", trials=3)).run()
    assert len(optuna.load_study(study_name="cells", storage=url).trials) == 2
    extra.unlink()
    assert Runner(load_study(workdir / "study.yaml", trials=3)).run().trials == 3


def test_maximize(workdir, box_space):
    path = study_file(workdir, box_space, extra="direction: maximize", budget="{trials: 100}")
    s = Runner(load_study(path, storage="memory")).run()
    assert s.best_value > 4 * 5.12**2 * 0.6  # pushed to the corners


def test_mixed_space_through_every_optimizer(workdir):
    space = write(workdir / "mixed.yaml", """
        parameters:
          x: {type: float, low: -3, high: 3}
          lr: {type: float, low: 1.0e-4, high: 1.0, log: true}
          k: {type: int, low: 0, high: 8, step: 2}
          c: {type: categorical, choices: [a, b, c]}
          flag: {type: bool}
          m: {type: mask, length: 12}
        """)
    for name in ["pso", "ga", "ssa", "sca", "tpe", "random"]:
        pop = "population: 4, n_startup_trials: 4" if name == "tpe" else "population: 8"
        path = study_file(workdir, space, name=f"m-{name}", optimizer=f"{{name: {name}, {pop}}}",
                          budget="{trials: 40}")
        url = f"sqlite:///{workdir}/m.db"
        s = Runner(load_study(path, storage=url)).run()
        trials = optuna.load_study(study_name=f"m-{name}", storage=url).trials
        assert s.trials == 40 and all(t.state == TrialState.COMPLETE for t in trials)
        for t in trials:
            assert set(t.params) == {"x", "lr", "k", "c", "flag", "m.n_selected"}
            assert len(t.user_attrs["m"]) == 4  # 12 bits packed in hex
            assert t.params["k"] in (0, 2, 4, 6, 8) and t.params["c"] in ("a", "b", "c")


def test_storage_errors_are_user_errors(workdir, box_space):
    from optileuk.errors import StorageError

    with pytest.raises(StorageError, match="does not exist"):
        open_storage(f"sqlite:///{workdir}/no/such/folder/x.db")
    with pytest.raises(StorageError, match="cannot open"):
        open_storage("postgresql://nobody@127.0.0.1:1/none")
    with pytest.raises(StorageError, match="not a storage URL"):
        open_storage("optileuk.db")


def test_optuna_visualization_works_on_a_runner_study(workdir, box_space):
    pytest.importorskip("plotly")
    path = study_file(workdir, box_space, optimizer="{name: ssa, population: 8}", budget="{trials: 40}")
    url = f"sqlite:///{workdir}/v.db"
    Runner(load_study(path, storage=url)).run()
    study = optuna.load_study(study_name="s", storage=url)
    for plot in (optuna.visualization.plot_optimization_history, optuna.visualization.plot_param_importances,
                 optuna.visualization.plot_slice):
        fig = plot(study)
        assert len(fig.data) >= 1


class Epochs(Objective):
    """Reports a decreasing error per 'epoch'; the level depends on x0 (for pruning tests)."""

    Config = AnalyticConfig

    def evaluate(self, config, *, trial=None):
        level = abs(config["x0"])
        for epoch in range(5):
            value = level + 1.0 / (epoch + 1)
            if trial is not None:
                trial.report(value, epoch)
                if trial.should_prune():
                    raise optuna.TrialPruned(f"pruned after epoch {epoch + 1}")
        return Score(value, {"epochs_trained": 5})


if OBJECTIVES.resolve("epochs_test") is None:
    OBJECTIVES.register("epochs_test", Epochs)


def test_pruner_in_the_study_file_prunes_and_resume_reuses_pruned_trials(workdir, box_space):
    path = study_file(workdir, box_space, objective="{type: epochs_test}", optimizer="{name: pso, population: 6}",
                      budget="{trials: 30}", extra="pruner: {name: median, n_startup_trials: 3, n_warmup_steps: 0}")
    url = f"sqlite:///{workdir}/p.db"
    s = Runner(load_study(path, storage=url)).run()
    trials = optuna.load_study(study_name="s", storage=url).trials
    pruned = [t for t in trials if t.state == TrialState.PRUNED]
    assert len(trials) == 30 and s.pruned == len(pruned) > 0
    for t in pruned:  # the optimizer was told the last reported value
        last = t.intermediate_values[max(t.intermediate_values)]
        assert t.system_attrs["optileuk:told"] == pytest.approx(last)
        assert t.user_attrs["pruned"].startswith("pruned after epoch")
    again = Runner(load_study(path, storage=url, trials=36)).run()
    assert again.evaluated == 6 and len(optuna.load_study(study_name="s", storage=url).trials) == 36


def test_bad_pruner_settings_are_config_errors(workdir, box_space):
    for pruner, needle in (("{name: oracle}", "pruner.name must be one of"),
                           ("{name: median, patience: 3}", "bad argument for optuna.pruners.MedianPruner")):
        path = study_file(workdir, box_space, extra=f"pruner: {pruner}")
        with pytest.raises(ConfigError, match=needle):
            load_study(path)


# ---- asynchronous mode (inline here; on Dask workers in test_parallel) ------------------------------
ASYNC = ["tpe", "random", "ga", "pso", "pso_ring"]


def _async_file(tmp, box_space, optimizer, trials, name="a"):
    pop = "population: 6, n_startup_trials: 6" if optimizer == "tpe" else "population: 6"
    return study_file(tmp, box_space, name=name, optimizer=f"{{name: {optimizer}, {pop}}}",
                      budget=f"{{trials: {trials}}}", extra="runner: {mode: async}")


@pytest.mark.parametrize("optimizer", ASYNC)
def test_async_mode_asks_one_candidate_at_a_time_and_resumes(workdir, box_space, optimizer):
    url = f"sqlite:///{workdir}/a.db"
    first = Runner(load_study(_async_file(workdir, box_space, optimizer, 30), storage=url)).run()
    more = Runner(load_study(_async_file(workdir, box_space, optimizer, 30), storage=url, trials=45)).run()
    assert first.evaluated == 30 and more.evaluated == 15 and more.trials == 45
    trials = optuna.load_study(study_name="a", storage=url).trials
    assert sorted(t.user_attrs["ask"] for t in trials) == list(range(45))  # one ticket per candidate, never twice
    assert all(t.state == TrialState.COMPLETE and "generation" not in t.user_attrs for t in trials)
    if optimizer.startswith("pso"):
        assert {t.user_attrs["particle"] for t in trials} == set(range(6))


@pytest.mark.parametrize("optimizer", ["tpe", "ga", "pso"])
def test_async_optimizers_beat_random_search(workdir, box_space, optimizer):
    best = {}
    for name in (optimizer, "random"):
        s = Runner(load_study(_async_file(workdir, box_space, name, 150, name=f"q-{name}"), storage="memory")).run()
        best[name] = s.best_value
    assert best[optimizer] < best["random"] / 2, best


@pytest.mark.parametrize("optimizer", ["ga", "tpe", "pso"])
def test_async_resume_after_an_interruption_takes_the_stored_results(workdir, box_space, optimizer):
    url = f"sqlite:///{workdir}/i.db"
    study = interrupted_at(load_study(_async_file(workdir, box_space, optimizer, 40, name="i"), storage=url), 23)
    with pytest.raises(KeyboardInterrupt):
        Runner(study, state_every=3600).run()  # the state is saved on the way out, not before
    assert len(optuna.load_study(study_name="i", storage=url).trials) == 22
    resumed = Runner(load_study(_async_file(workdir, box_space, optimizer, 40, name="i"), storage=url)).run()
    assert resumed.evaluated == 18 and resumed.trials == 40
    trials = optuna.load_study(study_name="i", storage=url).trials
    assert len({t.user_attrs["ask"] for t in trials}) == 40


def test_async_is_refused_for_optimizers_that_evaluate_whole_generations(workdir, box_space):
    path = study_file(workdir, box_space, optimizer="{name: ssa, population: 6}", extra="runner: {mode: async}")
    with pytest.raises(ConfigError, match=r"runner.mode async needs an optimizer that makes one candidate at a time "
                                          r"\(cmaes, ga, gp, nevergrad, optuna_nsga2, pso, pso_ring, qmc, random, tpe\); 'ssa' evaluates whole "
                                          r"generations"):
        load_study(path)


@pytest.mark.parametrize("kind", ["sqlite", "journal", "postgres", "redis"])
@pytest.mark.parametrize("pruner", ["", "pruner: {name: median}"])
def test_trials_left_running_by_an_older_run_are_failed_with_a_reason(workdir, box_space, request, kind, pruner):
    """Older versions queued candidates in the storage (and other tools may leave trials unfinished): a
    re-run fails every trial left RUNNING or WAITING, with its reason, on every storage."""
    name = f"stale-{kind}-{'pruned' if pruner else 'plain'}"
    path = study_file(workdir, box_space, name=name, optimizer="{name: random, population: 5}", budget="{trials: 10}",
                      objective="{type: analytic, function: sphere, steps: 2}", extra=pruner)
    url = {"sqlite": f"sqlite:///{workdir}/stale.db", "journal": f"journal:///{workdir}/stale.log"}.get(kind) or \
        request.getfixturevalue(f"{kind}_url")
    Runner(load_study(path, storage=url)).run()
    study = optuna.load_study(study_name=name, storage=open_storage(url))
    study.ask()  # RUNNING
    study.enqueue_trial({"x0": 0.5, "x1": 0.5, "x2": 0.5, "x3": 0.5})  # WAITING
    s = Runner(load_study(path, storage=url, trials=15)).run()
    trials = optuna.load_study(study_name=name, storage=open_storage(url)).trials
    assert s.trials == 15 and s.evaluated == 5
    stale = [t for t in trials if t.state == TrialState.FAIL]
    assert len(stale) == 2 and all("left unfinished by an interrupted earlier run" in t.user_attrs["error"] for t in stale)
    assert not [t for t in trials if t.state in (TrialState.RUNNING, TrialState.WAITING)]


COND_SPACE = ("{parameters: {method: {type: categorical, choices: [a, b]}, x0: {type: float, low: -3, high: 3}, "
              "x1: {type: float, low: -3, high: 3, when: {method: b}}, k: {type: int, low: 0, high: 4, when: {method: b}}}}")


@pytest.mark.parametrize("optimizer", ["pso", "ga", "ssa", "sca", "tpe", "random", "optuna_nsga2",
                                       "mealpy:GWO.OriginalGWO"])
def test_a_conditional_space_runs_with_every_optimizer(workdir, optimizer):
    pop = "n_startup_trials: 5, population: 4" if optimizer == "tpe" else "population: 8"
    path = study_file(workdir, COND_SPACE, optimizer=f"{{name: '{optimizer}', {pop}}}", budget="{trials: 32}")
    url = f"sqlite:///{workdir}/o.db"
    summary = Runner(load_study(path, storage=url)).run()
    assert summary.trials == 32
    trials = optuna.load_study(study_name="s", storage=url).get_trials()
    assert all(t.state == TrialState.COMPLETE for t in trials)
    for t in trials:  # inactive parameters: not trial params, named in the user attrs
        on_b = t.params["method"] == "b"
        assert set(t.params) == ({"method", "x0", "x1", "k"} if on_b else {"method", "x0"})
        assert t.user_attrs["inactive"] == ([] if on_b else ["x1", "k"])
    assert set(summary.best_params) == set(min(trials, key=lambda t: t.value).params)  # the summary shows the active ones


def test_inactive_parameters_are_not_fanova_input(workdir):
    from optileuk.report._collect import collect
    from optileuk.report._html import importance_figure

    path = study_file(workdir, COND_SPACE, optimizer="{name: random, population: 8}", budget="{trials: 40}")
    url = f"sqlite:///{workdir}/o.db"
    Runner(load_study(path, storage=url)).run()
    study = optuna.load_study(study_name="s", storage=url)
    assert any("x1" in t.params for t in study.trials) and any("x1" not in t.params for t in study.trials)
    (run,) = [r for g in collect(open_storage(url), url) for r in g.runs]
    fig, note = importance_figure(open_storage(url), run)  # the report's fANOVA figure
    assert note == "" and set(fig.data[0].y) == {"method", "x0"}


# ---- duplicate candidates (runner.reuse_duplicates) --------------------------------------------------
def _mixed(tmp, name: str, reuse: str, trials: int) -> Any:
    from conftest import ROOT

    return write(tmp / f"{name}.yaml", f"""
        name: {name}
        seed: 3
        objective: {{type: analytic, function: sphere}}
        search_space: {ROOT / "search_spaces" / "mixed.yaml"}
        optimizer: {{name: ga, population: 24, elite: 2}}
        budget: {{trials: {trials}}}
        runner: {{reuse_duplicates: {reuse}}}
        """)


def _candidates(url: str, name: str) -> list[str]:
    from optileuk.runner._past import Duplicates

    study = load_study(_mixed_path[name])
    return [Duplicates.key(study.space.record(study.space.from_record(t.params, t.user_attrs)))
            for t in optuna.load_study(study_name=name, storage=url).get_trials()]


_mixed_path: dict[str, Any] = {}


def test_a_candidate_equal_to_a_complete_trial_takes_its_value_and_spends_no_budget(workdir):
    """The GA proposes equal candidates again (mixed space): each is told the stored value, not evaluated,
    not stored, and the budget still buys 120 distinct evaluations."""
    url = f"sqlite:///{workdir}/d.db"
    for name, reuse in (("dup-on", "auto"), ("dup-off", "false")):
        _mixed_path[name] = _mixed(workdir, name, reuse, 120)
    on = Runner(load_study(_mixed_path["dup-on"], storage=url)).run()
    off = Runner(load_study(_mixed_path["dup-off"], storage=url)).run()
    keys_on, keys_off = _candidates(url, "dup-on"), _candidates(url, "dup-off")
    assert on.trials == on.evaluated == len(keys_on) == 120 and on.duplicates > 0
    assert len(set(keys_on)) == 120  # every stored trial a different candidate
    assert off.duplicates == 0 and len(keys_off) == 120 and len(set(keys_off)) < 120  # evaluated again without reuse
    # the first generations are the same search: a duplicate told its stored value is what evaluating it gave
    assert keys_on[:24] == keys_off[:24]


def test_reuse_keeps_a_cut_and_resumed_run_identical_to_a_straight_one(workdir):
    straight_url, cut_url = f"sqlite:///{workdir}/straight.db", f"sqlite:///{workdir}/cut.db"
    _mixed_path["dup-on"] = _mixed(workdir, "dup-on", "true", 150)
    straight = Runner(load_study(_mixed_path["dup-on"], storage=straight_url)).run()
    first = Runner(load_study(_mixed_path["dup-on"], storage=cut_url, trials=61)).run()  # cuts a generation
    resumed = Runner(load_study(_mixed_path["dup-on"], storage=cut_url)).run()
    assert straight.duplicates > 0 and first.duplicates + resumed.duplicates >= straight.duplicates
    a = optuna.load_study(study_name="dup-on", storage=straight_url).get_trials()
    b = optuna.load_study(study_name="dup-on", storage=cut_url).get_trials()
    assert [t.params for t in a] == [t.params for t in b] and [t.value for t in a] == [t.value for t in b]
    assert resumed.best_value == straight.best_value and resumed.trials == 150


@pytest.mark.parametrize("mode", ["generational", "async"])
def test_a_search_that_only_proposes_evaluated_candidates_stops_as_converged(workdir, mode):
    """8 distinct candidates and a budget of 12: the run ends when nothing new comes, with a reason."""
    space = write(workdir / "tiny.yaml", """
        parameters:
          k: {type: int, low: 0, high: 3}
          c: {type: categorical, choices: [a, b]}
        """)
    path = write(workdir / "tiny_study.yaml", f"""
        name: tiny
        objective: {{type: analytic, function: sphere}}
        search_space: {space}
        optimizer: {{name: random, population: 4}}
        budget: {{trials: 12}}
        runner: {{mode: {mode}}}
        """)
    url = f"sqlite:///{workdir}/t.db"
    s = Runner(load_study(path, storage=url)).run()
    assert s.trials == s.evaluated == 8 and s.stopped_by.startswith("converged")
    assert s.duplicates >= 1000
    assert len({(t.params["k"], t.params["c"]) for t in optuna.load_study(study_name="tiny", storage=url).trials}) == 8
