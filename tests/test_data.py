"""Data: the synthetic generator, every loader on small trees in its layout, bad data, leak-free splits."""

from __future__ import annotations

import re
import warnings

import numpy as np
import pytest
from PIL import Image

from conftest import BCCD, run_cli, write
from optileuk.data import (
    AllIdb1Data, AllIdb2Data, CnmcData, DataWarning, FoldersData, PairsData, SplitConfig,
    SyntheticData, load_dataset, make_splits,
)
from optileuk.data._cache import cache_dir
from optileuk.errors import DataError


def _png(path, arr):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path)


def _rgb(seed, size=(20, 24)):
    return np.random.default_rng(seed).integers(0, 255, (*size, 3), dtype=np.uint8)


# ---- synthetic -------------------------------------------------------------------------------------
def test_synthetic_is_deterministic_and_masked():
    cfg = SyntheticData(type="synthetic", n_per_class=5, size=48, seed=3)
    a, b = load_dataset(cfg), load_dataset(cfg.model_copy(update={"seed": 3}))
    assert all(np.array_equal(x, y) for x, y in zip(a.images, b.images))
    c = load_dataset(cfg.model_copy(update={"seed": 4}))
    assert not np.array_equal(a.images[0], c.images[0])
    assert a.counts() == {"normal": 5, "L1": 5, "L2": 5, "L3": 5}
    for img, mask in zip(a.images, a.masks):
        assert img.shape == (48, 48, 3) and img.dtype == np.uint8 and mask.shape == (48, 48)
        assert set(np.unique(mask)) == {0, 1, 2}
    assert a.groups is not None and len(set(a.groups)) > 1


def test_synthetic_classes_differ_the_way_fab_says():
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=30, difficulty=0.0, seed=1))
    cell = {c: np.mean([(m > 0).sum() for m, lab in zip(ds.masks, ds.labels) if lab == i]) for i, c in enumerate(ds.classes)}
    nc = {c: np.mean([(m == 2).sum() / (m > 0).sum() for m, lab in zip(ds.masks, ds.labels) if lab == i])
          for i, c in enumerate(ds.classes)}
    assert cell["L2"] > 1.8 * cell["L1"] and cell["L3"] > 1.8 * cell["normal"]  # large vs small cells
    assert nc["L1"] > nc["L2"] and nc["normal"] > nc["L3"]  # scant cytoplasm in small cells
    hard = load_dataset(SyntheticData(type="synthetic", n_per_class=30, difficulty=1.0, seed=1))
    cell_h = [np.mean([(m > 0).sum() for m, lab in zip(hard.masks, hard.labels) if lab == i]) for i in range(4)]
    assert max(cell_h) / min(cell_h) < 1.25  # difficulty moves the classes together


def test_synthetic_fields_and_extra_classes():
    ds = load_dataset(SyntheticData(type="synthetic", kind="fields", size=128, n_per_class=1,
                                    classes=["L3", "neutrophil", "rbc"]))
    assert ds.images[0].shape == (128, 128, 3)
    assert (ds.masks[0] == 2).any() and (ds.masks[2] == 2).sum() == 0  # red cells have no nucleus


def test_synthetic_is_cached_on_disk():
    cfg = SyntheticData(type="synthetic", n_per_class=2, size=32, seed=11)
    before = set(cache_dir().glob("synthetic-*.npz"))
    first = load_dataset(cfg)
    new = set(cache_dir().glob("synthetic-*.npz")) - before
    assert len(new) == 1
    again = load_dataset(cfg)
    assert all(np.array_equal(x, y) for x, y in zip(first.images, again.images))


# ---- loaders -----------------------------------------------------------------------------------------
def test_folders_with_groups(tmp_path):
    for cls, n in (("blast", 3), ("normal", 2)):
        for i in range(n):
            _png(tmp_path / cls / f"P{i % 2}_cell{i}.png", _rgb(i))
    ds = load_dataset(FoldersData(type="folders", path=str(tmp_path), group_pattern=r"^(P\d+)_"))
    assert ds.classes == ["blast", "normal"] and ds.counts() == {"blast": 3, "normal": 2}
    assert sorted(set(ds.groups)) == ["P0", "P1"]
    assert ds.images[0].shape == (20, 24, 3)


def test_all_idb2(tmp_path):
    for i, y in enumerate([0, 1, 1, 0]):
        _png(tmp_path / "img" / f"Im{i + 1:03d}_{y}.tif", _rgb(i))
    ds = load_dataset(AllIdb2Data(type="all_idb2", path=str(tmp_path)))
    assert ds.labels.tolist() == [0, 1, 1, 0] and ds.classes == ["normal", "blast"]


def test_all_idb1_with_centroids(tmp_path):
    _png(tmp_path / "Im001_1.jpg", _rgb(1, (60, 80)))
    (tmp_path / "Im001_1.xyc").write_text("10 20\n30 40\n")
    _png(tmp_path / "Im002_0.jpg", _rgb(2, (60, 80)))
    (tmp_path / "Im002_0.xyc").write_text("")
    ds = load_dataset(AllIdb1Data(type="all_idb1", path=str(tmp_path)))
    assert ds.labels.tolist() == [1, 0]
    assert ds.extras["blast_centroids"][0].tolist() == [[10, 20], [30, 40]]
    assert ds.extras["blast_centroids"][1].shape == (0, 2)


def test_cnmc_groups_by_subject(tmp_path):
    names = {"fold_0/all": ["UID_9_11_1_all.bmp", "UID_9_12_2_all.bmp"], "fold_0/hem": ["UID_H21_19_3_hem.bmp"],
             "fold_1/all": ["UID_14_1_1_all.bmp"], "fold_1/hem": ["UID_H3_2_1_hem.bmp"]}
    files = [(folder, f) for folder, fs in names.items() for f in fs]
    for j, (folder, f) in enumerate(files):  # every cell its own image (identical ones would share a group)
        _png(tmp_path / folder / f, _rgb(j))
    ds = load_dataset(CnmcData(type="cnmc", path=str(tmp_path)))
    assert ds.classes == ["hem", "all"] and sorted(ds.groups) == ["14", "9", "9", "H21", "H3"]
    only0 = load_dataset(CnmcData(type="cnmc", path=str(tmp_path), folds=[0]))
    assert len(only0) == 3


@pytest.mark.parametrize("layout", ["folders", "side_by_side"])
def test_pairs_with_multilevel_masks(tmp_path, layout):
    mask = np.zeros((20, 24), np.uint8)
    mask[5:15, 5:15] = 128
    mask[8:12, 8:12] = 255
    for i in range(2):
        if layout == "folders":
            _png(tmp_path / "images" / f"c{i}.jpg", _rgb(i))
            _png(tmp_path / "masks" / f"c{i}.png", mask)
        else:
            _png(tmp_path / f"c{i}.jpg", _rgb(i))
            _png(tmp_path / f"c{i}_mask.png", mask)
    ds = load_dataset(PairsData(type="pairs", path=str(tmp_path)))
    assert len(ds) == 2
    assert (ds.masks[0] == 1).sum() == 100 - 16 and (ds.masks[0] == 2).sum() == 16


def test_binary_masks_mean_nucleus_or_cell(tmp_path):
    _png(tmp_path / "a.png", _rgb(0))
    _png(tmp_path / "a_mask.png", np.where(np.arange(24)[None, :] > 10, 255, 0).repeat(20, 0).astype(np.uint8))
    assert set(np.unique(load_dataset(PairsData(type="pairs", path=str(tmp_path))).masks[0])) == {0, 2}
    cell = load_dataset(PairsData(type="pairs", path=str(tmp_path), binary_as="cell"))
    assert set(np.unique(cell.masks[0])) == {0, 1}


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared/data/bccd_cells not present")
def test_class_folders_on_bccd_cells():
    ds = load_dataset(FoldersData(type="folders", path=str(BCCD), group_pattern=r"(BloodImage_\d+)"))
    assert ds.counts() == {"Platelets": 361, "RBC": 698, "WBC": 372}
    assert len(set(ds.groups)) == 364


# ---- bad data --------------------------------------------------------------------------------------
def test_missing_folder(tmp_path):
    with pytest.raises(DataError, match="nowhere: dataset folder not found"):
        load_dataset(FoldersData(type="folders", path=str(tmp_path / "nowhere")))


def test_empty_class(tmp_path):
    _png(tmp_path / "a" / "x.png", _rgb(0))
    (tmp_path / "b").mkdir()
    with pytest.raises(DataError, match=r"/b: class folder has no images"):
        load_dataset(FoldersData(type="folders", path=str(tmp_path)))


def test_corrupt_image_raises_or_is_skipped_with_one_warning(tmp_path):
    for i in range(3):
        _png(tmp_path / "a" / f"ok{i}.png", _rgb(i))
    (tmp_path / "a" / "broken.png").write_bytes(b"\x89PNG not really")
    (tmp_path / "a" / "broken2.jpg").write_bytes(b"garbage")
    with pytest.raises(DataError) as exc:
        load_dataset(FoldersData(type="folders", path=str(tmp_path)))
    assert "broken.png: cannot be read as an image" in str(exc.value) and "broken2.jpg" in str(exc.value)
    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        ds = load_dataset(FoldersData(type="folders", path=str(tmp_path), on_error="skip"))
    assert len(ds) == 3
    msgs = [str(x.message) for x in w if issubclass(x.category, DataWarning)]
    assert len(msgs) == 1 and "skipped 2 bad file(s)" in msgs[0]


def test_a_dataset_with_one_class_is_refused_for_classification(workdir):
    for i in range(4):
        _png(workdir / "cells" / "blast" / f"b{i}.png", _rgb(i))
    (workdir / "cells" / "normal").mkdir()
    for i in range(3):  # a second class whose every file is unreadable: on_error: skip leaves one class
        (workdir / "cells" / "normal" / f"n{i}.png").write_bytes(b"not an image")
    write(workdir / "s.yaml", """
        name: one
        objective: {type: handcrafted, dataset: {type: folders, path: cells, on_error: skip}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 10, log: true}}}
        optimizer: {name: random, population: 2}
        budget: {trials: 2}
        """)
    r = run_cli("run", "s.yaml", cwd=workdir)
    assert r.returncode == 2 and r.stderr.strip().endswith(
        "cells: a classifier needs at least two classes with images; found 1: blast (4 images)"), r.stderr
    assert not (workdir / "optileuk.db").exists()
    ds = load_dataset(FoldersData(type="folders", path=str(workdir / "cells"), on_error="skip"))
    assert len(make_splits(ds, SplitConfig(test_size=0.25, folds=1, val_size=0.34), classify=False).test)  # segmentation: fine


def test_mask_of_the_wrong_size(tmp_path):
    _png(tmp_path / "images" / "a.png", _rgb(0))
    _png(tmp_path / "masks" / "a.png", np.zeros((10, 10), np.uint8))
    with pytest.raises(DataError, match=r"a.png: mask is 10x10 but its image is 24x20"):
        load_dataset(PairsData(type="pairs", path=str(tmp_path)))


def test_unknown_label_in_a_name(tmp_path):
    _png(tmp_path / "Im001_7.tif", _rgb(0))
    with pytest.raises(DataError, match=r"Im001_7.tif: name does not follow ImNNN_Y"):
        load_dataset(AllIdb2Data(type="all_idb2", path=str(tmp_path)))


def test_mask_with_too_many_levels(tmp_path):
    _png(tmp_path / "a.png", _rgb(0))
    _png(tmp_path / "a_mask.png", np.arange(480, dtype=np.uint8).reshape(20, 24))
    with pytest.raises(DataError, match="at most 3 levels"):
        load_dataset(PairsData(type="pairs", path=str(tmp_path)))


# ---- splits -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("folds", [1, 5])
def test_no_group_straddles_splits(folds):
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=40, size=32, smears=15, seed=2))
    splits = make_splits(ds, SplitConfig(test_size=0.2, folds=folds), seed=4)
    assert splits.grouped
    test_groups = set(ds.groups[splits.test])
    assert len(splits.folds) == folds
    for fold in splits.folds:
        tr, va = set(ds.groups[fold.train]), set(ds.groups[fold.val])
        assert not tr & va and not tr & test_groups and not va & test_groups
        assert len(np.intersect1d(fold.train, fold.val)) == 0
        assert len(fold.train) + len(fold.val) + len(splits.test) == len(ds)


def test_splits_without_groups_are_stratified():
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=25, size=32))
    ds.groups = None
    s = make_splits(ds, SplitConfig(test_size=0.2, folds=4))
    assert not s.grouped
    assert np.bincount(ds.labels[s.test]).tolist() == [5, 5, 5, 5]


@pytest.mark.parametrize("share", [0.3, 0.4, 0.6, 0.15, 0.2])
def test_the_held_out_share_is_the_one_asked_for(share):
    from sklearn.model_selection import StratifiedKFold

    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=50, size=32))
    ds.groups = None
    s = make_splits(ds, SplitConfig(test_size=share, folds=1, val_size=0.3), seed=1)
    assert len(s.test) == round(share * 200)
    assert np.all(np.abs(np.bincount(ds.labels[s.test]) - share * 50) <= 1.5)  # stratified: +-0.5 per part taken
    assert abs(len(s.folds[0].val) - 0.3 * len(s.search)) <= 2  # the validation share too
    assert s.sizes() == {"test": len(s.test), "search": 200 - len(s.test), "train": len(s.folds[0].train),
                         "validation": len(s.folds[0].val), "folds": 1}
    if share == 0.2:  # a share of 1/k is the same k-fold part as before, so earlier studies keep their test split
        _, part0 = next(StratifiedKFold(5, shuffle=True, random_state=1).split(np.zeros(200), ds.labels))
        assert s.test.tolist() == sorted(part0.tolist())


def test_a_grouped_held_out_share_is_near_the_one_asked_for():
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=60, size=32, smears=24, seed=3))
    for share in (0.3, 0.4):
        s = make_splits(ds, SplitConfig(test_size=share, folds=2), seed=0)
        assert abs(len(s.test) / len(ds) - share) < 0.04  # was 1/3 and 1/2: the share rounded to 1/k
        assert not set(ds.groups[s.test]) & set(ds.groups[s.search])
    few = load_dataset(SyntheticData(type="synthetic", n_per_class=12, size=32, smears=8, seed=3))
    with pytest.warns(DataWarning, match=r"split.test_size 0.3 needs more parts than 8 groups can fill; held out 2 "
                                         r"of 7 parts \(0.286\) instead"):
        s = make_splits(few, SplitConfig(test_size=0.3, folds=2), seed=0)
    assert s.sizes()["test"] > 0  # the nearest share the groups allow, counted in the summary
    with pytest.raises(DataError, match=r"split.test_fold 9 needs split.test_size 0.1 as 1 of 10 or more parts; "
                                        r"the 8 groups make 8"):
        make_splits(few, SplitConfig(test_size=0.1, test_fold=9, folds=2), seed=0)


def test_shares_that_cannot_be_honoured_are_refused_at_load(workdir):
    for split, key, says in (("{test_size: 0.03}", "objective.split.test_size", "nearest share is 1/20 = 0.05"),
                             ("{test_size: 0.3, test_fold: 1}", "objective.split.test_fold", "needs a test_size of 1/k")):
        write(workdir / "s.yaml", f"""
            name: s
            objective: {{type: handcrafted, dataset: {{type: synthetic, n_per_class: 20}}, split: {split}}}
            search_space: {{parameters: {{C: {{type: float, low: 0.1, high: 100, log: true}}}}}}
            optimizer: {{name: random}}
            budget: {{trials: 2}}
            """)
        r = run_cli("run", "s.yaml", cwd=workdir)
        assert r.returncode == 2 and key in r.stderr and says in r.stderr and "Traceback" not in r.stderr, r.stderr
        assert not (workdir / "optileuk.db").exists()


def test_too_few_groups_is_a_data_error():
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=5, size=32, smears=3))
    with pytest.raises(DataError, match="3 groups cannot make 5 splits"):
        make_splits(ds, SplitConfig(test_size=0, folds=5))


# ---- the baseline and the CLI --------------------------------------------------------------------------
def _baseline(dataset: dict) -> float:
    from optileuk.objectives import make

    obj = make("handcrafted", {"dataset": dataset, "split": {"test_size": 0.0, "folds": 5}})
    return obj.evaluate({"C": 10.0}).attrs["balanced_accuracy"]


@pytest.mark.skipif(not BCCD.is_dir(), reason="shared/data/bccd_cells not present")
def test_svm_baseline_on_bccd_cells_with_grouped_cv():
    assert _baseline({"type": "folders", "path": str(BCCD), "group_pattern": r"(BloodImage_\d+)"}) >= 0.95


def test_synthetic_classes_are_learnable_but_not_trivial():
    ba = _baseline({"type": "synthetic", "n_per_class": 150})
    assert 0.6 < ba < 0.97


def test_data_preview_writes_images_masks_and_a_sheet(workdir):
    r = run_cli("data", "preview", "--per-class", "2", "-o", "pv", cwd=workdir)
    assert r.returncode == 0, r.stderr
    files = {p.name for p in (workdir / "pv").glob("*.png")}
    assert "sheet.png" in files and sum(f.endswith("_mask.png") for f in files) == 8
    sheet = np.asarray(Image.open(workdir / "pv" / "sheet.png"))
    assert sheet.shape[0] == 4 * 96 and sheet.std() > 10


def test_a_synthetic_study_runs_and_a_missing_folder_is_a_user_error(workdir):
    write(workdir / "study.yaml", """
        name: synth
        objective: {type: handcrafted, dataset: {type: synthetic, n_per_class: 30, size: 48, smears: 10},
                    split: {test_size: 0.2, folds: 3}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 100, log: true}}}
        optimizer: {name: random, population: 3}
        budget: {trials: 6}
        """)
    r = run_cli("run", "study.yaml", cwd=workdir)
    assert r.returncode == 0, r.stderr
    assert "6 finished" in r.stdout
    # the split the scores come from, counted (groups make the held-out share approximate)
    assert re.search(r"images: test (\d+) held out \((\d+\.\d)%\), search (\d+) \(3-fold cross-validation\)",
                     r.stdout.replace("\n", " ").replace("│", " ")), r.stdout
    write(workdir / "bad.yaml", """
        name: bad
        objective: {type: handcrafted, dataset: {type: folders, path: no/such/folder}}
        search_space: {parameters: {C: {type: float, low: 0.1, high: 100, log: true}}}
        optimizer: {name: random}
        budget: {trials: 6}
        """)
    r = run_cli("run", "bad.yaml", cwd=workdir)
    # relative paths are read from the study file's folder, and the message names where it looked
    assert r.returncode == 2 and r.stderr.strip() == f"error: {workdir / 'no/such/folder'}: dataset folder not found"
    import optuna

    assert "bad" not in [s.study_name for s in optuna.get_all_study_summaries(f"sqlite:///{workdir}/optileuk.db")]
