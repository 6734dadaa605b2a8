"""Real inputs: image/mask pairs with labels, images of mixed sizes and shapes, stain normalisation."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from optileuk.config import load_study
from optileuk.data import PairsData, SyntheticData, load_dataset
from optileuk.data._geometry import from_square, to_square
from optileuk.data._stain import StainNormaliser
from optileuk.errors import ConfigError, DataError
from optileuk.objectives import make

SHAPES = [(40, 40), (48, 64), (72, 56)]  # (height, width): three sizes, two aspect ratios
WBC = Path(__file__).resolve().parents[2] / "shared" / "data" / "wbc_seg_cellavision"


def write_pairs(root: Path, n_per_class: int = 6, mask_dir: str = "masks") -> Path:
    """Synthetic crops resized to three shapes, masks as 0/128/255 PNGs, classes in labels.csv."""
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=n_per_class, size=48, classes=["normal", "L1"]))
    (root / "images").mkdir(parents=True)
    (root / mask_dir).mkdir()
    rows = ["id,class"]
    for i, (img, mask, lab) in enumerate(zip(ds.images, ds.masks, ds.labels)):
        h, w = SHAPES[i % 3]
        Image.fromarray(img).resize((w, h), Image.BILINEAR).save(root / "images" / f"c{i:03d}.png")
        grey = np.array([0, 128, 255], np.uint8)[mask]
        Image.fromarray(grey).resize((w, h), Image.NEAREST).save(root / mask_dir / f"c{i:03d}.png")
        rows.append(f"c{i:03d},{ds.classes[lab]}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


@pytest.fixture(scope="module")
def mixed(tmp_path_factory) -> Path:
    return write_pairs(tmp_path_factory.mktemp("mixed") / "cells")


# ---- the pairs loader ------------------------------------------------------------------------------
def test_pairs_read_labels_three_level_masks_and_mixed_sizes(mixed):
    ds = load_dataset(PairsData(type="pairs", path=str(mixed)))
    assert ds.classes == ["L1", "normal"] and ds.counts() == {"L1": 6, "normal": 6}
    assert {im.shape[:2] for im in ds.images} == set(SHAPES)
    assert all(m.shape == im.shape[:2] for m, im in zip(ds.masks, ds.images))
    assert set(np.unique(np.concatenate([m.ravel() for m in ds.masks]))) == {0, 1, 2}


def test_pairs_mask_dir_and_missing_label_row(tmp_path):
    root = write_pairs(tmp_path / "cells", n_per_class=2, mask_dir="cell_masks")
    with pytest.raises(DataError, match="no masks/ folder .*mask_dir; folders there: cell_masks/"):
        load_dataset(PairsData(type="pairs", path=str(root)))
    assert len(load_dataset(PairsData(type="pairs", path=str(root), mask_dir="cell_masks"))) == 4
    (root / "labels.csv").write_text("id,class\nc000,normal\n")
    with pytest.raises(DataError, match=r"c001\.png: no row for 'c001' in labels\.csv"):
        load_dataset(PairsData(type="pairs", path=str(root), mask_dir="cell_masks"))


@pytest.mark.skipif(not WBC.is_dir(), reason="shared/data/wbc_seg_cellavision not present")
def test_real_wbc_pairs_serve_segmentation_and_classification():
    ds = load_dataset(PairsData(type="pairs", path=str(WBC)))
    assert len(ds) == 100 and ds.counts()["lymphocyte"] == 37 and ds.counts()["basophil"] == 3
    assert all(set(np.unique(m)) <= {0, 1, 2} for m in ds.masks) and (ds.masks[0] == 2).any()


# ---- geometry ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("policy", ["pad", "crop", "stretch"])
def test_to_square_and_back_keep_the_geometry(policy):
    h, w = 30, 50
    mask = torch.zeros(1, h, w)
    mask[:, 10:20, 20:35] = 1
    sq = to_square(mask, 40, policy, mask=True)
    assert sq.shape == (1, 40, 40)
    back = from_square(sq, h, w, policy) > 0.5
    if policy == "crop":  # the centre square keeps the object; the cut-off borders come back as background
        assert back[0, 10:20, 20:35].float().mean() > 0.9 and not back[0, :, :5].any()
    else:
        assert (back == (mask > 0.5)).float().mean() > 0.97
    if policy == "pad":  # padding is background for masks, edge pixels for images
        assert sq[0, :5].sum() == 0
        img = to_square(torch.rand(3, h, w), 40, "pad")  # 30x50 -> 24x40 placed from row 8
        assert torch.equal(img[:, 0], img[:, 8]) and torch.equal(img[:, 39], img[:, 31])


# ---- stain normalisation: known answers ----------------------------------------------------------------
def _shift_stain(img: np.ndarray, gains=(1.3, 0.8, 1.15)) -> np.ndarray:
    od = -np.log((img.astype(np.float64) + 1) / 256)
    return np.clip(256 * np.exp(-od * np.array(gains)) - 1, 0, 255).round().astype(np.uint8)


@pytest.fixture(scope="module")
def stained_cell() -> np.ndarray:
    ds = load_dataset(SyntheticData(type="synthetic", n_per_class=1, size=64, classes=["L2"]))
    return ds.images[0]


def _shift_lab(img: np.ndarray) -> np.ndarray:
    from skimage import color

    lab = color.rgb2lab(img)
    lab = lab * np.array([0.9, 1.2, 0.8]) + np.array([4.0, 8.0, -6.0])
    return (np.clip(color.lab2rgb(lab), 0, 1) * 255).round().astype(np.uint8)


def test_reinhard_brings_a_shifted_stain_back(stained_cell):
    shifted = _shift_lab(stained_cell)  # Reinhard matches Lab means and spreads: this shift it undoes
    before = np.abs(shifted.astype(int) - stained_cell).mean()
    back = StainNormaliser("reinhard", [stained_cell])(shifted)
    after = np.abs(back.astype(int) - stained_cell).mean()
    assert before > 8 and after < before / 3


def test_macenko_maps_a_shifted_stain_to_the_same_image(stained_cell):
    shifted = _shift_stain(stained_cell)
    norm = StainNormaliser("macenko", [stained_cell])
    a, b = norm(stained_cell), norm(shifted)
    assert norm.failures == 0
    assert np.abs(a.astype(int) - b).mean() < np.abs(shifted.astype(int) - stained_cell).mean() / 3


def test_macenko_on_a_blank_image_is_counted_not_hidden(stained_cell):
    norm = StainNormaliser("macenko", [stained_cell])
    blank = np.full((16, 16, 3), 250, np.uint8)
    assert np.array_equal(norm(blank), blank) and norm.failures == 1


# ---- every image objective on images of three sizes ----------------------------------------------------
def objective_cases(path: str) -> dict[str, tuple[dict, dict]]:
    ds = {"type": "pairs", "path": path}
    split = {"test_size": 0.25, "folds": 1, "val_size": 0.35}
    return {
        "unet_plr": ({"dataset": ds, "split": split, "image_size": 32, "device": "cpu"},
                     {"depth": 2, "base": 8, "epochs": 2, "patience": 0, "resize": "crop", "stain": "reinhard"}),
        "segmentation": ({"dataset": ds, "split": split}, {"image_size": 32, "resize": "pad", "stain": "macenko"}),
        "dknn": ({"dataset": ds, "split": split, "image_size": 32, "widths": [8, 16], "hidden": 16, "device": "cpu"},
                 {"epochs": 1, "resize": "stretch", "stain": "reinhard"}),
        "feature_selection": ({"dataset": ds, "split": {"test_size": 0.25, "folds": 2}, "trunk_epochs": 1,
                               "widths": [8, 16], "stain": "reinhard", "device": "cpu"}, {}),
        "handcrafted": ({"dataset": ds, "split": {"test_size": 0.25, "folds": 2}, "resize": "pad", "stain": "reinhard"},
                        {"C": 1.0}),
    }


@pytest.mark.parametrize("name", ["unet_plr", "segmentation", "dknn", "feature_selection", "handcrafted"])
def test_every_image_objective_takes_images_of_three_sizes(name, mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path / "cache"))
    config, params = objective_cases(str(mixed))[name]
    obj = make(name, config, seed=0)
    if name == "feature_selection":
        obj.prepare()
        params = {"features": np.ones(obj.n_features, bool)}
    score = obj.evaluate(params)
    value = score.value if isinstance(score.value, float) else score.value[0]
    assert np.isfinite(value) and 0 <= value <= 1
    if name in ("unet_plr", "segmentation"):  # scored on every image's own pixels
        final = obj.train_final(params)
        for i in range(len(final.predictions["index"])):
            pred, truth = final.predictions[f"pred_{i}"], final.predictions[f"truth_{i}"]
            assert pred.shape == truth.shape and truth.shape in SHAPES
        assert 0 <= final.metrics["dice"] <= 1


def test_input_policy_and_stain_are_searchable(mixed, tmp_path, monkeypatch):
    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path / "cache"))
    (tmp_path / "s.yaml").write_text(textwrap.dedent(f"""
        name: seg-inputs
        objective: {{type: segmentation, dataset: {{type: pairs, path: {mixed}}}}}
        search_space:
          parameters:
            stain: {{type: categorical, choices: [none, reinhard, macenko]}}
            resize: {{type: categorical, choices: [pad, crop, stretch]}}
            image_size: {{type: categorical, choices: [0, 32]}}
        optimizer: {{name: random, population: 6}}
        budget: {{trials: 12}}
        storage: memory
        """))
    from optileuk.runner import Runner

    summary = Runner(load_study(tmp_path / "s.yaml")).run()
    assert summary.evaluated == 12 and summary.failed == 0 and np.isfinite(summary.best_value)


def test_dataset_paths_are_read_from_the_study_files_folder(mixed, tmp_path):
    sub = tmp_path / "studies"
    sub.mkdir()
    (sub / "s.yaml").write_text(textwrap.dedent(f"""
        name: rel
        objective: {{type: segmentation, dataset: {{type: pairs, path: {Path('..') / 'data'}}}}}
        search_space: {{parameters: {{k: {{type: int, low: 2, high: 4}}}}}}
        optimizer: {{name: random}}
        budget: {{trials: 2}}
        """))
    (tmp_path / "data").symlink_to(mixed)
    study = load_study(sub / "s.yaml")
    assert study.objective_config.dataset.path == str(tmp_path / "data")


def test_an_objective_key_is_named_as_one(tmp_path):
    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: bad
        objective: {type: unet_plr, image_size: 100}
        search_space: {parameters: {depth: {type: int, low: 1, high: 3}}}
        optimizer: {name: random}
        budget: {trials: 2}
        """))
    with pytest.raises(ConfigError) as err:
        load_study(tmp_path / "s.yaml")
    assert "objective.image_size must be divisible by 2**depth = 8" in str(err.value)


def test_unet_final_training_reproduces_the_searched_candidate(mixed, tmp_path, monkeypatch):
    """``optileuk train`` trains the exported config as the search did: the same validation Dice."""
    monkeypatch.setenv("OPTILEUK_CACHE", str(tmp_path / "cache"))
    config, params = objective_cases(str(mixed))["unet_plr"]
    params = {**params, "epochs": 4, "patience": 2, "scale": 0.2, "stain_jitter": 0.1}
    searched = make("unet_plr", config, seed=0).evaluate(params)
    final = make("unet_plr", config, seed=0).train_final(params)
    assert final.facts["val_dice"] == pytest.approx(searched.attrs["dice"])
    assert final.facts["best_epoch"] == searched.attrs["best_epoch"]
    assert final.metrics["split"].startswith("test") and len(final.predictions["index"]) == 3


@pytest.mark.skipif(not WBC.is_dir(), reason="shared/data/wbc_seg_cellavision not present")
def test_shipped_real_study_reads_its_data_relative_to_itself(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # any working directory
    study = load_study(Path(__file__).resolve().parents[1] / "studies" / "real_unet_tpe.yaml")
    assert Path(study.objective_config.dataset.path).resolve() == WBC.resolve()
    obj = study.objective()
    obj.prepare()  # the 100 real images and their masks load
    assert len(obj._data.ds) == 100 and len(obj._data.splits.test) == 20


def test_a_missing_stain_reference_is_refused_before_anything_is_stored(tmp_path):
    from conftest import run_cli

    (tmp_path / "s.yaml").write_text(textwrap.dedent("""
        name: badref
        objective: {type: segmentation, stain_reference: nofile.png, dataset: {type: synthetic, n_per_class: 3}}
        search_space: {parameters: {stain: {type: categorical, choices: [none, reinhard]}}}
        optimizer: {name: random}
        budget: {trials: 2}
        storage: sqlite:///s.db
        """))
    r = run_cli("run", "s.yaml", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.strip() == (
        f"error: s.yaml: objective.stain_reference must name an existing image file (relative paths are read "
        f"from the study file's folder), got '{tmp_path / 'nofile.png'}'")
    assert not (tmp_path / "s.db").exists()
