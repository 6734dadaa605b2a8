"""The segment-then-classify ``pipeline`` objective, class-size checks and bootstrap intervals."""

from __future__ import annotations

import json
import textwrap
import warnings
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image
from sklearn.metrics import accuracy_score, balanced_accuracy_score, f1_score

from conftest import run_cli
from optileuk.config import load_study, study_from_dict
from optileuk.data import DataWarning, FoldersData, SplitConfig, load_dataset, make_splits
from optileuk.errors import ConfigError, DataError
from optileuk.features._cells import CELL_FEATURES, GROUPS, lobes, measure_cell
from optileuk.objectives import make
from optileuk.objectives import _pipeline
from optileuk.metrics import bootstrap_ci
from optileuk.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
WBC = ROOT.parent / "shared" / "data" / "wbc_seg_cellavision"
TINY = {"type": "synthetic", "n_per_class": 6, "size": 40, "classes": ["normal", "L1", "L2"]}
SMALL = {"dataset": TINY, "image_size": 40, "split": {"test_size": 0.2, "folds": 2}}


# ---- measurements --------------------------------------------------------------------------------
def test_measurements_see_nucleus_and_cytoplasm_apart():
    img = np.full((60, 60, 3), 230, np.uint8)
    img[10:50, 10:50] = (170, 120, 200)  # cytoplasm
    img[20:40, 20:40] = (70, 30, 110)  # nucleus
    nuc = np.zeros((60, 60), bool)
    nuc[20:40, 20:40] = True
    cell = np.zeros((60, 60), bool)
    cell[10:50, 10:50] = True
    v = dict(zip(CELL_FEATURES, measure_cell(img, nuc, cell)))
    assert len(CELL_FEATURES) == sum(len(g) for g in GROUPS.values()) == len(measure_cell(img, nuc, cell))
    assert v["nucleus_area_ratio"] == pytest.approx(400 / 1600)
    assert v["nucleus_mean_r"] == pytest.approx(70 / 255) and v["cytoplasm_mean_r"] == pytest.approx(170 / 255)
    assert v["contrast_L"] < 0  # the nucleus is darker than its cytoplasm
    assert v["nucleus_solidity"] == pytest.approx(1.0) and v["nucleus_lobes"] == 1
    empty = measure_cell(img, np.zeros((60, 60), bool), np.zeros((60, 60), bool))
    assert np.isfinite(empty).all()


def test_lobes_count_pieces_joined_by_thin_bridges():
    nuc = np.zeros((60, 90), bool)
    for x in (10, 38, 66):  # three round lobes
        yy, xx = np.ogrid[:60, :90]
        nuc |= (yy - 30) ** 2 + (xx - x - 8) ** 2 <= 81
    nuc[29:31, 10:80] = True  # two-pixel bridges
    assert lobes(nuc) == 3


# ---- the stage cache -----------------------------------------------------------------------------
def test_a_candidate_changing_only_the_classifier_does_not_segment(monkeypatch):
    calls = []
    real = _pipeline.cluster
    monkeypatch.setattr(_pipeline, "cluster", lambda *a, **k: calls.append(1) or real(*a, **k))
    obj = make("pipeline", SMALL, seed=0)
    first = obj.evaluate({"k": 3})
    clustered = len(calls)
    assert clustered > 0 and obj.segmentations == 1
    for change in ({"k": 3, "classifier": "logreg", "C": 0.3}, {"k": 3, "classifier": "knn", "n_neighbors": 3},
                   {"k": 3, "use_nucleus_texture": False, "class_weight": "none"}, {"k": 3, "use_image": True}):
        obj.evaluate(change)
    assert len(calls) == clustered and obj.segmentations == 1  # nothing segmented or measured again
    assert obj.evaluate({"k": 3}).value == first.value
    obj.evaluate({"k": 4})  # a segmentation change segments again
    assert obj.segmentations == 2 and len(calls) > clustered


def test_switches_and_mask_pick_the_columns():
    obj = make("pipeline", SMALL, seed=0)
    n = len(obj.feature_names)
    p = obj.params({})
    on = obj.columns(p, {})
    assert on.sum() == len(CELL_FEATURES)  # every cell group, not the whole-image features
    off = obj.columns(obj.params({"use_nucleus_colour": False}), {})
    assert on.sum() - off.sum() == len(GROUPS["nucleus_colour"])
    mask = np.zeros(n, bool)
    mask[:3] = True
    assert obj.columns(p, {"features": mask}).sum() == 3
    assert obj.columns(p, {"features": [0, 1]}).sum() == 2  # exported as selected indices
    score = obj.evaluate({"features": np.zeros(n, bool)})
    assert score.value == 1.0 and score.attrs["selected"] == 0


def test_space_checks_name_what_does_not_fit():
    from optileuk.space import SearchSpace

    space = SearchSpace.from_dict({"parameters": {"k": {"type": "int", "low": 2, "high": 4},
                                                  "bogus": {"type": "bool"}, "use_deep": {"type": "bool"}}})
    problems = make("pipeline", {**SMALL, "segmenter": "unet"}).check_space(space)
    text = "\n".join(problems)
    assert "'bogus' is not used by the pipeline" in text
    assert "'k' sets the classical segmentation, but objective.segmenter is unet" in text
    assert "'use_deep' needs objective.weights" in text
    with pytest.raises(ConfigError, match="objective.defaults.nope"):
        make("pipeline", {**SMALL, "defaults": {"nope": 1}})


@pytest.mark.parametrize("optimizer", ["pso", "ga", "ssa", "sca", "tpe", "random"])
def test_every_optimizer_tunes_the_pipeline_with_a_mask(optimizer, tmp_path):
    study = study_from_dict({
        "name": f"pipe-{optimizer}", "seed": 0, "storage": f"sqlite:///{tmp_path}/p.db",
        "objective": {"type": "pipeline", **SMALL},
        "search_space": {"parameters": {"k": {"type": "int", "low": 2, "high": 4},
                                        "classifier": {"type": "categorical", "choices": ["svm", "logreg"]},
                                        "C": {"type": "float", "low": 0.1, "high": 10, "log": True},
                                        "use_image": {"type": "bool"},
                                        "features": {"type": "mask", "length": "auto"}}},
        "optimizer": {"name": optimizer, "population": 1 if optimizer == "tpe" else 5},
        "budget": {"trials": 10}}, tmp_path / "s.yaml")
    summary = Runner(study).run()
    assert summary.trials == 10 and summary.failed == 0 and 0 <= summary.best_value <= 1


def test_unet_segmenter_trains_once_per_fold_and_is_cached(monkeypatch, tmp_path):
    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path / "cache"))
    cfg = {**SMALL, "segmenter": "unet", "device": "cpu",
           "unet": {"image_size": 32, "depth": 2, "base": 4, "epochs": 1, "batch_size": 4}}
    trained = []
    real = _pipeline.PipelineObjective._train_segmenter
    monkeypatch.setattr(_pipeline.PipelineObjective, "_train_segmenter",
                        lambda self, stain, train: trained.append(len(train)) or real(self, stain, train))
    obj = make("pipeline", cfg, seed=0)
    obj.evaluate({})
    obj.evaluate({"C": 5.0})
    assert len(trained) == 2  # one U-Net per fold, none for a classifier change
    folds = obj._data.splits.folds
    assert trained == [len(f.train) for f in folds]  # each on its own fold's training part only
    make("pipeline", cfg, seed=0).evaluate({})  # a new process: read from the disk cache
    assert len(trained) == 2
    final = obj.train_final({})
    assert len(trained) == 3 and trained[-1] == len(obj._data.splits.search)
    assert final.metrics["n_test"] == len(obj._data.splits.test)


def test_unet_segmenter_needs_masks(tmp_path):
    for c in ("a", "b"):
        (tmp_path / c).mkdir()
        for i in range(6):
            Image.fromarray(np.full((20, 20, 3), 40 * i, np.uint8)).save(tmp_path / c / f"{i}.png")
    obj = make("pipeline", {"dataset": {"type": "folders", "path": str(tmp_path)}, "segmenter": "unet",
                            "split": {"test_size": 0.2, "folds": 2}})
    with pytest.raises(DataError, match="segmenter unet needs nucleus/cell masks"):
        obj.prepare()


# ---- export -> train -------------------------------------------------------------------------------
def test_pipeline_export_train_round_trip_reports_intervals(workdir):
    (workdir / "study.yaml").write_text(textwrap.dedent(f"""
        name: pipe
        seed: 0
        objective: {{type: pipeline, image_size: 40, dataset: {json.dumps(TINY)}, split: {{test_size: 0.3, folds: 2}}}}
        search_space:
          parameters:
            C: {{type: float, low: 0.1, high: 10.0, log: true}}
            use_image: {{type: bool}}
            features: {{type: mask, length: auto}}
        optimizer: {{name: ga, population: 4}}
        budget: {{trials: 8}}
        """))
    assert run_cli("run", "study.yaml", cwd=workdir).returncode == 0
    r = run_cli("export", "pipe", "-o", "best.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    best = yaml.safe_load((workdir / "best.yaml").read_text())
    assert all(isinstance(i, int) for i in best["params"]["features"])  # the mask as selected indices
    r = run_cli("train", "best.yaml", "-o", "run", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "95% CI" in r.stdout
    metrics = json.loads((workdir / "run" / "metrics.json").read_text())
    lo, hi = metrics["balanced_accuracy_ci95"]
    assert lo <= metrics["balanced_accuracy"] <= hi and "macro_f1_ci95" in metrics
    assert metrics["selected"] == sum(1 for _ in metrics["facts"]["measurements"])
    report = run_cli("report", "-o", "report.html", cwd=workdir)
    assert report.returncode == 0, report.stderr
    assert "bootstrap 95% interval" in (workdir / "report.html").read_text()


def test_feature_selection_with_an_auto_mask_exports_and_trains(workdir):
    (workdir / "fs.yaml").write_text(textwrap.dedent("""
        name: fs
        seed: 0
        objective: {type: feature_selection, features: [handcrafted], classifier: knn,
                    dataset: {type: synthetic, n_per_class: 8, size: 32}, split: {test_size: 0.25, folds: 2}}
        search_space: {parameters: {features: {type: mask, length: auto}}}
        optimizer: {name: ga, population: 4}
        budget: {trials: 8}
        """))
    assert run_cli("run", "fs.yaml", cwd=workdir).returncode == 0
    r = run_cli("export", "fs", "-o", "best.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run_cli("train", "best.yaml", "-o", "run", cwd=workdir)
    assert r.returncode == 0, r.stderr


# ---- classes too small to split ------------------------------------------------------------------
def _folders(root: Path, counts: dict[str, int]) -> Path:
    for c, n in counts.items():
        (root / c).mkdir(parents=True)
        for i in range(n):
            Image.fromarray(np.full((16, 16, 3), 10 * i, np.uint8)).save(root / c / f"{c}{i}.png")
    return root


def test_a_class_too_small_to_stratify_is_named_or_dropped(tmp_path):
    root = _folders(tmp_path / "cells", {"big": 12, "mid": 10, "tiny": 2})
    ds = load_dataset(FoldersData(type="folders", path=str(root)))
    with pytest.raises(DataError, match=r"tiny \(2 images\) cannot be stratified over 5 splits.*min_per_class"):
        make_splits(ds, SplitConfig(test_size=0.2, folds=3))
    with pytest.warns(DataWarning, match=r"tiny \(2\)"):
        kept = load_dataset(FoldersData(type="folders", path=str(root), min_per_class=5))
    assert kept.classes == ["big", "mid"] and kept.counts() == {"big": 12, "mid": 10}
    make_splits(kept, SplitConfig(test_size=0.2, folds=3))


def test_a_too_small_class_is_a_clear_cli_error(tmp_path):
    _folders(tmp_path / "cells", {"big": 12, "mid": 10, "tiny": 2})
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: small
        objective: {type: handcrafted, dataset: {type: folders, path: cells}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 10}}}
        optimizer: {name: random}
        budget: {trials: 2}
        storage: sqlite:///s.db
        """))
    r = run_cli("run", "s.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "tiny (2 images)" in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "s.db").exists()


# ---- bootstrap intervals -------------------------------------------------------------------------
def test_bootstrap_intervals_are_scikit_learns_metrics_over_resamples():
    rng = np.random.default_rng(3)
    y = rng.integers(0, 4, 60)
    pred = np.where(rng.random(60) < 0.7, y, rng.integers(0, 4, 60))
    ci = bootstrap_ci(y, pred, 4, n_boot=300, seed=7)
    draw = np.random.default_rng(7).integers(0, 60, size=(300, 60))  # the same resamples
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref = {"accuracy": [accuracy_score(y[d], pred[d]) for d in draw],
               "balanced_accuracy": [balanced_accuracy_score(y[d], pred[d]) for d in draw],
               "macro_f1": [f1_score(y[d], pred[d], average="macro") for d in draw]}
    for name, values in ref.items():
        assert ci[name] == pytest.approx([np.percentile(values, 2.5), np.percentile(values, 97.5)])
    assert bootstrap_ci(y, y, 4)["balanced_accuracy"] == [1.0, 1.0]


def test_objectives_record_validation_intervals():
    score = make("handcrafted", {"dataset": {**TINY, "n_per_class": 10}, "split": {"test_size": 0.2, "folds": 2}}).evaluate({})
    lo, hi = score.attrs["balanced_accuracy_ci95"]
    assert lo <= hi and "macro_f1_ci95" in score.attrs


# ---- the shipped study on real cells -------------------------------------------------------------
@pytest.mark.skipif(not WBC.is_dir(), reason="shared/data/wbc_seg_cellavision not present")
def test_shipped_pipeline_study_loads_real_cell_types(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    study = load_study(ROOT / "studies" / "real_pipeline_pso.yaml")
    obj = study.objective()
    with pytest.warns(DataWarning, match="basophil"):
        obj.prepare()
    ds, splits = obj._data.ds, obj._data.splits
    assert ds.classes == ["eosinophil", "lymphocyte", "monocyte", "neutrophil"] and len(ds) == 97
    assert len(splits.folds) == 3 and len(splits.test) == 20


def test_deep_features_of_a_local_trunk_join_the_measurements(tmp_path):
    import torch

    from optileuk.models import DKNN

    torch.save(DKNN(3, image_size=32, widths=(8, 16), ranks=(2, 1)).state_dict(), tmp_path / "trunk.pt")
    obj = make("pipeline", {**SMALL, "weights": str(tmp_path / "trunk.pt"), "widths": [8, 16], "trunk_size": 32})
    assert obj.mask_lengths() == {"features": len(obj.feature_names)}
    assert sum(n.startswith("deep_") for n in obj.feature_names) == 16
    with_deep = obj.evaluate({"use_deep": True})
    without = obj.evaluate({"use_deep": False})
    assert with_deep.attrs["selected"] - without.attrs["selected"] == 16
    assert obj.segmentations == 1


def test_unet_mask_cache_never_unpickles(tmp_path, monkeypatch):
    from optileuk.data._cache import cache_dir, cached_arrays, key_of

    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path))
    path = cache_dir() / f"pipeline-unet-masks-{key_of({'a': 1})}.npz"
    np.savez(path, array=np.array([{"code": "would run on load"}], dtype=object))  # a crafted pickle
    built = []
    with pytest.raises(DataError, match="never loads pickles"):  # refused, not loaded and not silently replaced
        cached_arrays("pipeline-unet-masks", {"a": 1}, lambda: built.append(1) or np.ones((2, 2), bool))
    assert built == [] and path.exists()
    path.unlink()
    out = cached_arrays("pipeline-unet-masks", {"a": 1}, lambda: built.append(1) or np.ones((2, 2), bool))
    again = cached_arrays("pipeline-unet-masks", {"a": 1}, lambda: built.append(1) or np.zeros(1))
    assert built == [1] and out.dtype == bool and again.shape == (2, 2)


def test_weights_are_read_from_the_study_files_folder(tmp_path, monkeypatch):
    import torch

    from optileuk.models import DKNN

    (tmp_path / "study" / "models").mkdir(parents=True)
    torch.save(DKNN(3, image_size=32, widths=(8, 16), ranks=(2, 1)).state_dict(), tmp_path / "study" / "models" / "t.pt")
    text = textwrap.dedent(f"""
        name: rel
        objective: {{type: pipeline, image_size: 40, weights: models/t.pt, widths: [8, 16], trunk_size: 32,
                    dataset: {json.dumps(TINY)}, split: {{test_size: 0.2, folds: 2}}}}
        search_space: {{parameters: {{use_deep: {{type: bool}}}}}}
        optimizer: {{name: random}}
        budget: {{trials: 2}}
        """)
    (tmp_path / "study" / "s.yaml").write_text(text)
    monkeypatch.chdir(tmp_path)  # not the study's folder
    study = load_study(tmp_path / "study" / "s.yaml")
    assert Path(study.objective_config.weights) == tmp_path / "study" / "models" / "t.pt"
    assert study.objective().evaluate({"use_deep": True}).attrs["selected"] > len(CELL_FEATURES)


@pytest.mark.parametrize("objective, message", [
    ("{type: pipeline, weights: nofile.pt}", "error: s.yaml: objective.weights must name a local file or run folder "
     "(weights file not found; weights are never downloaded; relative paths are read from the study file's folder), got "),
    ("{type: pipeline, split: {test_size: 0.2, test_fold: 5}}",
     "error: s.yaml: objective.split.test_fold must be below 5 (test_size 0.2 makes 5 parts), got 5"),
    ("{type: pipeline, segmenter: unet, unet: {image_size: 100}}",
     "error: s.yaml: objective.unet.image_size must be divisible by 2**depth = 8, got 100"),
])
def test_pipeline_config_mistakes_end_in_one_message(tmp_path, objective, message):
    (tmp_path / "s.yaml").write_text(f"name: bad\nobjective: {objective}\n"
                                     "search_space: {parameters: {C: {type: float, low: 0.1, high: 10}}}\n"
                                     "optimizer: {name: random}\nbudget: {trials: 2}\nstorage: sqlite:///s.db\n")
    r = run_cli("run", "s.yaml", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert r.stderr.strip().startswith(message), r.stderr
    assert not (tmp_path / "s.db").exists()
