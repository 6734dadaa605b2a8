"""`optileuk export` -> `optileuk train`: the final model, scored once on the test split; every
metric in metrics.json is recomputed here from the saved predictions."""

from __future__ import annotations

import json
import numpy as np
import pytest
import yaml
from skimage.metrics import structural_similarity
from sklearn.metrics import accuracy_score, balanced_accuracy_score, confusion_matrix, f1_score, roc_auc_score

from conftest import ROOT, run_cli, write
from optileuk.data import load_dataset, make_splits
from optileuk.objectives import make
from optileuk.train import train


def check_classification(run_dir, *, probabilities: bool = True) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    p = np.load(run_dir / "predictions.npz")
    y, pred, scores = p["y_true"], p["y_pred"], p["proba"]
    assert m["task"] == "classification" and m["n_test"] == len(y)
    assert m["accuracy"] == pytest.approx(accuracy_score(y, pred), abs=1e-12)
    assert m["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(y, pred), abs=1e-12)
    labels = list(range(len(m["classes"])))
    assert m["macro_f1"] == pytest.approx(f1_score(y, pred, average="macro", labels=labels, zero_division=0), abs=1e-12)
    assert m["confusion_matrix"] == confusion_matrix(y, pred, labels=labels).tolist()
    if probabilities:
        assert np.allclose(scores.sum(1), 1)
        assert m["auc"] == pytest.approx(roc_auc_score(y, scores, multi_class="ovr", average="macro"), abs=1e-12)
    else:
        assert m["auc"] == pytest.approx(np.mean([roc_auc_score(y == k, scores[:, k]) for k in labels]), abs=1e-12)
    assert m["split"].startswith("test")
    assert m["split_sizes"]["test"] == len(y) and m["split_sizes"]["search"] > 0  # the split, counted
    return m


def check_segmentation(run_dir) -> dict:
    m = json.loads((run_dir / "metrics.json").read_text())
    p = np.load(run_dir / "predictions.npz")
    n = len(p["index"])
    dice, iou, ssim = [], [], []
    for i in range(n):
        a, b = p[f"pred_{i}"], p[f"truth_{i}"]
        inter, union, total = (a & b).sum(), (a | b).sum(), a.sum() + b.sum()
        dice.append(2 * inter / total if total else 1.0)
        iou.append(inter / union if union else 1.0)
        ssim.append(structural_similarity(a.astype(float), b.astype(float), data_range=1.0))
    assert m["task"] == "segmentation" and m["n_test"] == n > 0
    for key, vals in (("dice", dice), ("iou", iou), ("ssim", ssim)):
        assert m[key] == pytest.approx(np.mean(vals), abs=1e-12)
    assert m["split_sizes"]["test"] == n and m["split_sizes"]["search"] > 0
    return m


def test_segmentation_export_train_round_trip(workdir):
    write(workdir / "seg.yaml", f"""
        name: seg
        objective: {{type: segmentation, score: mean, target: nucleus}}
        search_space: {ROOT / "search_spaces" / "segmentation.yaml"}
        optimizer: {{name: random, population: 4}}
        budget: {{trials: 8}}
        """)
    r = run_cli("run", "seg.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    import optuna

    trials = optuna.load_study(study_name="seg", storage=f"sqlite:///{workdir}/optileuk.db").trials
    use = {"kmeans": {"k", "nucleus_rank"}, "pgs": {"k", "nucleus_rank", "T"}, "otsu": {"threshold_offset"}}
    for t in trials:  # the shipped space is conditional: only the chosen method's settings are stored
        assert set(t.params) & {"k", "nucleus_rank", "T", "threshold_offset"} == use[t.params["method"]]
    best = min(trials, key=lambda t: t.value)
    shown = {line.split("│")[1].strip() for line in r.stdout.splitlines() if line.count("│") >= 3}
    assert set(best.params) <= shown and not shown & (set(best.user_attrs["inactive"]))  # the summary: active only
    r = run_cli("export", "seg", "--top", "3", "-o", "best.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    exported = yaml.safe_load((workdir / "best.yaml").read_text())
    r = run_cli("train", "best.yaml", "-o", "run", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "scored once on the test split" in r.stdout and "dice" in r.stdout
    m = check_segmentation(workdir / "run")
    used = yaml.safe_load((workdir / "run" / "config.yaml").read_text())
    assert used["params"] == exported["params"] and used["study"] == "seg" and used["trial"] == exported["trial"]
    # the test split is the one the search held out
    obj = make("segmentation", seed=0)
    ds = load_dataset(obj.config.dataset)
    splits = make_splits(ds, obj.config.split, seed=0)
    index = np.load(workdir / "run" / "predictions.npz")["index"]
    assert index.tolist() == splits.test.tolist() and not set(index) & set(splits.search)
    assert m["mean"] > 0.8
    # --rank 2 trains the second of the exported top 3
    r = run_cli("train", "best.yaml", "--rank", "2", "-o", "run2", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert yaml.safe_load((workdir / "run2" / "config.yaml").read_text())["params"] == exported["top"][1]["params"]


def test_handcrafted_svm_and_feature_selection_round_trips(workdir):
    write(workdir / "hand.yaml", """
        objective: {type: handcrafted, dataset: {type: synthetic, n_per_class: 25}}
        params: {classifier: svm, C: 3.0}
        seed: 1
        """)
    run_dir, _ = train(workdir / "hand.yaml", workdir / "hand")
    m = check_classification(run_dir, probabilities=False)  # an SVM: AUC from its decision function
    assert "decision" in m["scores"]
    assert not list(run_dir.glob("*.pkl")) and not list(run_dir.glob("*.pt"))  # a bundle: data, no pickle
    import optileuk

    model = optileuk.load_model(run_dir)
    p = np.load(run_dir / "predictions.npz")
    assert model.classifier[-1].__class__.__name__ == "SVC" and len(p["index"]) == m["n_test"]

    write(workdir / "fs.yaml", """
        objective: {type: feature_selection, dataset: {type: synthetic, n_per_class: 20}, trunk_epochs: 2}
        params: {features: [0, 3, 5, 70, 80]}
        """)
    run_dir, metrics = train(workdir / "fs.yaml", workdir / "fs")
    check_classification(run_dir)
    assert metrics["selected"] == 5 and (run_dir / "weights.safetensors").exists()
    assert np.flatnonzero(np.load(run_dir / "predictions.npz")["mask"]).tolist() == [0, 3, 5, 70, 80]


def test_unet_weights_load_back_and_reproduce_the_saved_masks(workdir):
    write(workdir / "unet.yaml", """
        objective: {type: unet_plr, dataset: {type: synthetic, n_per_class: 8}}
        params: {epochs: 2, depth: 2, base: 8}
        """)
    run_dir, _ = train(workdir / "unet.yaml", workdir / "unet")
    check_segmentation(run_dir)
    from safetensors.torch import load_file

    obj = make("unet_plr", {"dataset": {"type": "synthetic", "n_per_class": 8}}, seed=0)
    model = obj.build(yaml.safe_load((run_dir / "config.yaml").read_text())["params"])
    model.load_state_dict({k[4:]: v for k, v in load_file(run_dir / "weights.safetensors").items()})
    ds = load_dataset(obj.config.dataset)
    p = np.load(run_dir / "predictions.npz")
    from optileuk.objectives._torch import image_tensor

    x = image_tensor([ds.images[i] for i in p["index"]], obj.config.image_size)
    again = obj.predict_masks(model, x, [ds.images[i].shape[:2] for i in p["index"]], "pad")
    assert all((again[i] == p[f"pred_{i}"]).all() for i in range(len(again)))


@pytest.mark.parametrize("text, message", [
    ("objective: {type: analytic, function: sphere}\nparams: {x0: 1}\n",
     "error: cfg.yaml: objective.type has no final model to train (optileuk train works for dknn, unet_plr, "
     "segmentation, handcrafted, feature_selection and pipeline), got 'analytic'"),
    ("objective: {type: segmentation}\n", "error: cfg.yaml: params is required"),
    ("objective: {type: nope}\nparams: {}\n", "error: cfg.yaml: objective.type must be one of"),
    ("objective: {type: segmentation, score: best}\nparams: {}\n", "error: cfg.yaml: objective.score must be one of"),
    ("objective: {type: segmentation}\nparams: {}\nepochs: 3\n", "error: cfg.yaml: epochs is not a known key"),
    ("objective: [1\n", "error: cfg.yaml: is not valid YAML"),
] + [(f"objective: {{type: {kind}, dataset: {{type: synthetic, n_per_class: 6, size: 32}}, {extra}"
      "split: {test_size: 0, folds: 2}}\nparams: {}\n",
      "error: cfg.yaml: objective.split.test_size is 0: nothing was held out to score")
     for kind, extra in [("segmentation", ""), ("pipeline", "image_size: 32, ")]])
def test_bad_training_configs_end_in_one_message(workdir, text, message):
    (workdir / "cfg.yaml").write_text(text)
    r = run_cli("train", "cfg.yaml", cwd=workdir)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith(message), r.stderr
    assert not (workdir / "runs").exists()


def test_rank_beyond_the_exported_top_is_refused(workdir):
    (workdir / "cfg.yaml").write_text("objective: {type: segmentation}\nparams: {}\n")
    r = run_cli("train", "cfg.yaml", "--rank", "2", cwd=workdir)
    assert r.returncode == 2
    assert r.stderr.strip() == "error: cfg.yaml: top must list at least 2 configs for --rank 2 (export with --top K), got 0"


@pytest.mark.parametrize("kind, extra", [("segmentation", {}), ("handcrafted", {}), ("pipeline", {"image_size": 32}),
                                         ("dknn", {"widths": [8], "hidden": 8}), ("unet_plr", {}),
                                         ("feature_selection", {"features": ["handcrafted"]})])
def test_a_final_fit_without_a_test_split_is_refused_in_the_api_too(kind, extra):
    from optileuk.errors import ConfigError
    from optileuk.objectives import make

    obj = make(kind, {"dataset": {"type": "synthetic", "n_per_class": 6, "size": 32},
                      "split": {"test_size": 0, "folds": 2}, **extra})
    with pytest.raises(ConfigError, match="test_size is 0: nothing was held out"):
        obj.train_final({})
