"""The seeded objectives: Kronecker layers, each objective through FixedTrial and plain Optuna."""

from __future__ import annotations

import re
import numpy as np
import optuna
import pytest
import torch

from conftest import ROOT, run_cli, write
from optileuk.config import load_study
from optileuk.errors import ConfigError
from optileuk.models import DKNN, KroneckerLinear, UNetPLR, factor_pair, kronecker_linear
from optileuk.objectives import make
from optileuk.space import SearchSpace

TINY = {"type": "synthetic", "n_per_class": 12, "size": 32, "smears": 8}


# ---- KroneckerLinear ----------------------------------------------------------------------------
@pytest.mark.parametrize("shape, rank", [((2, 3, 4, 5), 1), ((3, 2, 5, 4), 3), ((1, 7, 6, 1), 2), ((8, 8, 2, 3), 2)])
def test_kronecker_linear_matches_the_dense_layer(shape, rank):
    m1, m2, n1, n2 = shape
    torch.manual_seed(0)
    layer = KroneckerLinear(n1 * n2, m1 * m2, rank, shape).double()
    x = torch.randn(7, n1 * n2, dtype=torch.double)
    dense = sum(torch.kron(layer.a[r], layer.b[r]) for r in range(rank))
    assert torch.allclose(layer(x), x @ dense.T + layer.bias, atol=1e-12)
    assert layer.a.numel() + layer.b.numel() == rank * (m1 * n1 + m2 * n2)


def test_kronecker_linear_passes_gradcheck():
    torch.manual_seed(1)
    a = torch.randn(2, 3, 4, dtype=torch.double, requires_grad=True)
    b = torch.randn(2, 2, 5, dtype=torch.double, requires_grad=True)
    x = torch.randn(3, 20, dtype=torch.double, requires_grad=True)
    bias = torch.randn(6, dtype=torch.double, requires_grad=True)
    assert torch.autograd.gradcheck(kronecker_linear, (x, a, b, bias))


def test_kronecker_never_builds_the_full_weight_and_checks_shapes():
    layer = KroneckerLinear(25088, 4096, rank=1, shape=(64, 64, 128, 196))
    assert sum(p.numel() for p in (layer.a, layer.b)) == 20_736  # REFERENCES.md: instead of 102.8M
    assert layer(torch.randn(2, 25088)).shape == (2, 4096)
    with pytest.raises(ValueError, match="does not factor"):
        KroneckerLinear(12, 6, 1, (2, 2, 3, 4))
    assert factor_pair(4096) == (64, 64) and factor_pair(10) == (2, 5) and factor_pair(7) == (1, 7)


def test_dknn_head_is_much_smaller_at_low_rank():
    dense = DKNN(4, image_size=32, ranks=(0, 0)).head_parameters()
    kron = DKNN(4, image_size=32, ranks=(2, 1)).head_parameters()
    assert dense / kron > 10
    # head MACs per image: Kronecker layers in factored form (the cheaper multiplication order), counted by hand
    layer = KroneckerLinear(1024, 256, 2)  # (16, 16, 32, 32): X B^T then A(.): 32*32*16 + 16*32*16 per rank
    assert layer.macs() == 2 * (32 * 32 * 16 + 16 * 32 * 16)
    from torch.utils.flop_counter import FlopCounterMode

    flops = FlopCounterMode(display=False)
    with flops:
        layer(torch.zeros(1, 1024))
    assert flops.get_total_flops() == 2 * layer.macs()  # torch counts 2 flops per multiply-add
    assert DKNN(4, image_size=32, ranks=(0, 0), hidden=8).head_macs() == 1024 * 8 + 8 * 4
    out = UNetPLR(depth=2, base=4, prelu_mode="shared")(torch.zeros(2, 3, 32, 32))
    assert out.shape == (2, 1, 32, 32)


def test_dknn_relu_ablation_and_the_shipped_space_suggests_prelu_settings_only_with_prelu():
    net = DKNN(4, image_size=32, widths=(8, 16), ranks=(1, 1), hidden=16, activation="relu")
    assert not any(isinstance(m, torch.nn.PReLU) for m in net.modules())
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 4)
    assert net.head_parameters() == DKNN(4, image_size=32, widths=(8, 16), ranks=(1, 1), hidden=16).head_parameters()
    with pytest.raises(ValueError, match="prelu or relu"):
        DKNN(4, image_size=32, activation="tanh")
    with pytest.raises(ConfigError, match="objective.defaults.activation"):
        make("dknn", {"dataset": TINY, "defaults": {"activation": "tanh"}})
    space = SearchSpace.from_file(ROOT / "search_spaces" / "dknn.yaml")
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=1))
    seen = set()
    for _ in range(30):
        trial = study.ask()
        config = space.suggest(trial)
        seen.add(config["activation"])
        assert ("prelu_init" in trial.params) == ("prelu_mode" in config) == (config["activation"] == "prelu")
        study.tell(trial, 0.0)
    assert seen == {"prelu", "relu"}


def test_dknn_trains_with_the_one_cycle_schedule_unless_told_constant(monkeypatch):
    """The scored model is the last epoch's: with a constant rate it swings (synthetic smears, dense
    head, default training: validation error 0.51 with 1 torch thread, 0.08 with 2); one-cycle ends
    at a low rate."""
    import optileuk.objectives._dknn as mod

    seen = []
    real = mod.fit
    monkeypatch.setattr(mod, "fit", lambda *a, **k: seen.append(k["one_cycle"]) or real(*a, **k))
    cfg = {"dataset": TINY, "image_size": 32, "widths": [8, 16], "hidden": 16, "split": {"test_size": 0.2, "folds": 1}}
    make("dknn", cfg).evaluate({"epochs": 1})
    make("dknn", {**cfg, "defaults": {"schedule": "constant"}}).evaluate({"epochs": 1})
    make("dknn", cfg).evaluate({"epochs": 1, "schedule": "constant"})
    assert seen == [True, False, False]
    with pytest.raises(ConfigError, match="objective.defaults.schedule.*must be onecycle or constant"):
        make("dknn", {**cfg, "defaults": {"schedule": "cosine"}})
    space = SearchSpace.from_dict({"parameters": {"schedule": {"type": "categorical", "choices": ["onecycle", "cosine"]}}})
    assert make("dknn", cfg).check_space(space) == ["schedule can be onecycle or constant only (got 'cosine')"]


def test_kronecker_factors_learn_at_their_own_rate_and_the_rest_keep_theirs():
    """``kron_lr_scale`` gives the factors of the head's Kronecker layers their own Adam rate; biases,
    PReLU slopes, dense layers and a pretrained part keep theirs; a higher one moves the product further."""
    from optileuk.objectives._torch import adam, fit

    torch.manual_seed(0)
    net = DKNN(4, image_size=16, widths=(4, 8), ranks=(2, 0), hidden=8)
    opt = adam(net, 0.01, 1e-3, part=net.trunk, part_scale=0.1, factor_scale=3.0)
    rate = {id(p): (g["lr"], g["weight_decay"]) for g in opt.param_groups for p in g["params"]}
    assert len(rate) == len(list(net.parameters()))  # every parameter once
    layer = next(m for m in net.head if isinstance(m, KroneckerLinear))
    assert rate[id(layer.a)] == rate[id(layer.b)] == (0.03, 1e-3) and rate[id(layer.bias)] == (0.01, 0.0)
    dense = next(m for m in net.head if isinstance(m, torch.nn.Linear))  # rank2 = 0: the last layer is dense
    assert rate[id(dense.weight)] == (0.01, 1e-3)
    assert all(rate[id(p)][0] == pytest.approx(0.001) for p in net.trunk.parameters())

    x, y = torch.randn(32, 3, 16, 16), torch.arange(32) % 4
    moved = {}
    for scale in (1.0, 10.0):
        torch.manual_seed(0)
        net = DKNN(4, image_size=16, widths=(4, 8), ranks=(2, 0), hidden=8)
        layer = next(m for m in net.head if isinstance(m, KroneckerLinear))
        start = layer.dense_weight().detach().clone()
        fit(net, x, y, loss_fn=torch.nn.functional.cross_entropy, epochs=3, batch_size=8, lr=1e-3, weight_decay=0.0,
            device=torch.device("cpu"), seed=0, factor_scale=scale)
        moved[scale] = float((layer.dense_weight().detach() - start).norm() / start.norm())
    assert moved[10.0] > 3 * moved[1.0] > 0  # the product of the factors moves several times further
    cfg = {"dataset": TINY, "image_size": 32, "widths": [8, 16], "hidden": 16}
    space = SearchSpace.from_dict({"parameters": {"kron_lr_scale": {"type": "categorical", "choices": [0, 3]}}})
    assert make("dknn", cfg).check_space(space) == ["kron_lr_scale must be > 0 (a choice is 0)"]


# ---- every objective through FixedTrial -------------------------------------------------------
CASES = {
    "analytic": ({"function": "rastrigin"}, {"x": {"type": "float", "low": -2, "high": 2}}, {"x": 0.0}),
    "handcrafted": ({"dataset": TINY, "split": {"test_size": 0.2, "folds": 2}},
                    {"C": {"type": "float", "low": 0.1, "high": 10, "log": True}}, {"C": 1.0}),
    "dknn": ({"dataset": TINY, "image_size": 32, "widths": [8, 16], "hidden": 16},
             {"rank1": {"type": "int", "low": 0, "high": 2}, "epochs": {"type": "int", "low": 1, "high": 2}},
             {"rank1": 1, "epochs": 2}),
    "segmentation": ({"dataset": TINY, "max_images": 6},
                     {"k": {"type": "int", "low": 2, "high": 4}, "method": {"type": "categorical", "choices": ["kmeans", "pgs", "otsu"]}},
                     {"k": 3, "method": "pgs"}),
    "feature_selection": ({"dataset": TINY, "split": {"test_size": 0.2, "folds": 2}, "trunk_epochs": 1,
                           "widths": [8, 16]},
                          {"features": {"type": "mask", "length": "auto"}},
                          {"features.n_selected": 10, "features.seed": 3}),
    "unet_plr": ({"dataset": TINY, "image_size": 32},
                 {"depth": {"type": "int", "low": 1, "high": 2}, "epochs": {"type": "int", "low": 1, "high": 2}},
                 {"depth": 2, "epochs": 1}),
}


@pytest.mark.parametrize("name", list(CASES))
def test_objective_through_fixed_trial(name):
    config, params, fixed = CASES[name]
    space = SearchSpace.from_dict({"parameters": params})
    objective = make(name, config, space=space, seed=0)
    trial = optuna.trial.FixedTrial(fixed)
    value = objective(trial)
    assert isinstance(value, float) and np.isfinite(value)
    assert "seconds" in trial.user_attrs
    again = make(name, config, space=space, seed=0)(optuna.trial.FixedTrial(fixed))
    assert again == pytest.approx(value)  # deterministic for a seed


def test_dknn_in_plain_optuna_reports_every_epoch_for_pruners():
    config, params, _ = CASES["dknn"]
    space = SearchSpace.from_dict({"parameters": params})
    study = optuna.create_study(pruner=optuna.pruners.MedianPruner(n_startup_trials=1, n_warmup_steps=0),
                                sampler=optuna.samplers.RandomSampler(seed=0))
    study.optimize(make("dknn", config, space=space), n_trials=4)
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    assert done and all(len(t.intermediate_values) == t.params["epochs"] for t in done)
    assert all("balanced_accuracy" in t.user_attrs and "head_params" in t.user_attrs for t in done)


def test_dknn_multi_objective_in_plain_optuna_and_in_the_runner(workdir):
    config, params, _ = CASES["dknn"]
    space = SearchSpace.from_dict({"parameters": {**params, "hidden": {"type": "int", "low": 2, "high": 64, "log": True}}})
    study = optuna.create_study(directions=["minimize", "minimize"], sampler=optuna.samplers.NSGAIISampler(seed=0))
    study.optimize(make("dknn", config, space=space, objectives=["error", "head_params"]), n_trials=3)
    assert all(len(t.values) == 2 and t.values[1] == t.user_attrs["head_params"] for t in study.trials)
    assert len({t.params["hidden"] for t in study.trials}) > 1  # the head's width is searched too
    assert len({t.user_attrs["head_params"] for t in study.trials}) > 1
    with pytest.raises(ValueError, match="reports no value 'macs'"):
        make("dknn", config, space=space, objectives=["error", "macs"])
    write(workdir / "mo.yaml", """
        name: mo
        objective: {type: dknn}
        objectives: [error, head_params]
        search_space: {parameters: {rank1: {type: int, low: 1, high: 2}}}
        optimizer: {name: pso}
        budget: {trials: 2}
        """)
    r = run_cli("run", "mo.yaml", cwd=workdir)
    assert r.returncode == 2 and "optimizer.name optimizes one value; with 2 objectives use a multi-objective " \
        "optimizer (gp, nsga2, nsga3, optuna_nsga2, qmc, random, tpe), got 'pso'" in r.stderr, r.stderr


def test_segmentation_seconds_per_image_is_the_pipeline_cost_not_the_cache_lookup():
    config, _, _ = CASES["segmentation"]
    obj = make("segmentation", config, objectives=["error", "seconds_per_image"])
    assert obj.directions == ["minimize", "minimize"]
    obj.prepare()
    pgs = {"method": "pgs", "k": 3, "closing": 0}
    first, again = obj.evaluate(pgs), obj.evaluate({**pgs, "closing": 2})  # same clusterings, now cached
    otsu = obj.evaluate({"method": "otsu"})
    assert obj.values_of(first)[1] == first.attrs["seconds_per_image"] > 0
    assert again.attrs["seconds_per_image"] >= 0.8 * first.attrs["seconds_per_image"]  # cached, still charged
    assert otsu.attrs["seconds_per_image"] < first.attrs["seconds_per_image"]  # a threshold is cheaper than pivots


def test_preparation_reports_progress_while_cnn_trunks_train():
    """The first feature_selection run trains one CNN trunk per fold before any candidate: shown as progress."""
    from optileuk.objectives._base import preparing

    config, _, _ = CASES["feature_selection"]
    steps = []
    obj = make("feature_selection", {**config, "trunk_epochs": 2}, seed=11)
    with preparing(lambda done, total, what: steps.append((done, total, what))):
        obj.prepare()
    trunk = [s for s in steps if s[2].startswith("CNN trunk epochs")]
    assert [d for d, _, _ in trunk] == [1, 2, 3, 4] and {t for _, t, _ in trunk} == {4}  # 2 folds x 2 epochs
    obj.prepare()  # prepared once; no hook outside the block
    assert len(steps) == len(trunk) + 1  # + the hand-crafted features step


def test_feature_selection_vectorised_equals_one_by_one_and_sklearn():
    from sklearn.neighbors import KNeighborsClassifier

    config, params, _ = CASES["feature_selection"]
    obj = make("feature_selection", {**config, "features": ["handcrafted"]}, seed=0)
    obj.prepare()
    rng = np.random.default_rng(0)
    masks = [rng.random(obj.n_features) < 0.3 for _ in range(12)] + [np.zeros(obj.n_features, bool)]
    many = obj.evaluate_many([{"features": m} for m in masks])
    one = [obj.evaluate({"features": m}) for m in masks]
    assert [s.value for s in many] == pytest.approx([s.value for s in one])
    assert many[-1].value == 1.0  # nothing selected = worst fitness
    xtr, ytr, xva, yva = obj._folds[0]
    for m, score in zip(masks[:3], many[:3]):
        ref = [KNeighborsClassifier(5).fit(f[0][:, m], f[1]).predict(f[2][:, m]) for f in obj._folds]
        from sklearn.metrics import balanced_accuracy_score

        bal = np.mean([balanced_accuracy_score(f[3], p) for f, p in zip(obj._folds, ref)])
        assert score.attrs["balanced_accuracy"] == pytest.approx(bal)
        assert score.value == pytest.approx(0.99 * (1 - bal) + 0.01 * m.sum() / obj.n_features)


def test_bad_objective_values_are_user_errors(workdir):
    with pytest.raises(ValueError, match="weights file not found"):
        make("feature_selection", {"weights": str(workdir / "none.pt")})
    if not torch.cuda.is_available():
        obj = make("dknn", {"dataset": TINY, "device": "cuda:0", "widths": [8, 16], "hidden": 8})
        with pytest.raises(ConfigError, match="objective.device asks for CUDA"):
            obj.evaluate({"epochs": 1})


def test_feature_selection_loads_local_trunk_weights(tmp_path):
    net = DKNN(4, image_size=32, widths=(8, 16), ranks=(2, 1))
    torch.save(net.state_dict(), tmp_path / "w.pt")
    obj = make("feature_selection", {"dataset": TINY, "weights": str(tmp_path / "w.pt"), "widths": [8, 16],
                                     "split": {"test_size": 0.2, "folds": 2}})
    obj.prepare()
    assert obj.n_features == 16 + 48


@pytest.mark.parametrize("path", sorted((ROOT / "studies").glob("*.yaml")), ids=lambda p: p.name)
def test_every_shipped_study_is_valid(path):
    if "optimizers" in path.read_text():  # a comparison file
        from optileuk.compare import plan_comparison

        plan = plan_comparison([path])
        assert len(plan.runs) == len(plan.labels) * len(plan.seeds) >= 2
        with pytest.raises(ConfigError, match="makes this a comparison file: run it with optileuk compare"):
            load_study(path)
        return
    trunk = re.search(r"(trunk: \{weights|\n  weights): (\.\./runs/[\w./-]+)", path.read_text())
    if trunk and not (path.parent / trunk[2]).exists():
        # step 2 of the transfer workflow: without step 1's run folder, one message says what is missing
        with pytest.raises(ConfigError, match=r"objective.(trunk.)?weights .*weights file not found.*runs/"):
            load_study(path)
        return
    study = load_study(path)
    assert study.name and study.file.budget


def test_segmentation_tuned_beats_untuned_kmeans_on_held_out_images():
    """Tune on the search part, compare Dice on the test split with k-means k=3 in Lab, darkest cluster."""
    from optileuk.objectives._segmentation import BASELINE

    study = load_study(ROOT / "studies" / "segmentation_tpe.yaml", storage="memory", trials=40)
    from optileuk.runner import Runner

    runner = Runner(study)
    summary = runner.run()
    objective = runner._prepared[0]
    best = summary.best_params
    tuned = objective.test_scores(best)
    base = objective.test_scores(BASELINE)
    assert tuned["dice"] > base["dice"], (tuned, base)


def test_the_readme_plain_optuna_example_with_cma_es_runs(capsys):
    """The README's "objective in your own Optuna study" example, executed as it is written there."""
    import os

    readme = (ROOT / "README.md").read_text()
    code = readme.split("## Using an objective in your own Optuna study", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    assert "CmaEsSampler" in code
    cwd = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(code, "README.md", "exec"), {})
    finally:
        os.chdir(cwd)
    best, dice = capsys.readouterr().out.splitlines()[-2:]
    assert 0 <= float(best.split()[0]) < 0.5 and "blur_sigma" in best and 0.5 < float(dice.split()[1]) <= 1
