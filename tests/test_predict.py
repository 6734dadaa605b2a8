"""`optileuk train` -> a model bundle -> `optileuk predict` / `optileuk.load_model` on image files:
the same numbers train scored, safe bundles (no pickle, trusted types only), clear refusals, a gallery."""

from __future__ import annotations

import csv
import json
import pickle
import re
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import optileuk
from conftest import ROOT, dump_dom, run_cli, write
from optileuk.bundle import BundleError, _checksum, _sha256
from optileuk.data import load_dataset
from optileuk.objectives import make
from optileuk.predict import predict
from optileuk.train import train

WBC = ROOT.parent / "shared" / "data" / "wbc_seg_cellavision"
SYN = {"type": "synthetic", "n_per_class": 10, "size": 48}
BUNDLES = {  # objective config, params: small enough to train in seconds
    "handcrafted": ({"dataset": SYN, "stain": "reinhard"}, {"classifier": "svm", "C": 3.0}),
    "handcrafted-rf": ({"dataset": SYN}, {"classifier": "rf", "n_estimators": 20}),
    "dknn": ({"dataset": SYN, "image_size": 32, "widths": [8, 16], "hidden": 16, "defaults": {"epochs": 2}},
             {"rank1": 2, "stain": "macenko"}),
    "feature_selection": ({"dataset": SYN, "trunk_epochs": 1, "widths": [8]}, {"features": [0, 3, 5, 9, 12]}),
    "segmentation": ({"dataset": {**SYN, "n_per_class": 4}}, {"k": 3, "stain": "reinhard", "image_size": 40}),
    "unet_plr": ({"dataset": {**SYN, "n_per_class": 5}, "defaults": {"epochs": 2, "depth": 2, "base": 4}}, {}),
    "pipeline": ({"dataset": SYN, "image_size": 48, "segmenter": "unet",
                  "unet": {"epochs": 1, "image_size": 32, "depth": 2, "base": 4}}, {"classifier": "knn"}),
    "pipeline-classical": ({"dataset": SYN, "image_size": 48}, {"classifier": "logreg", "stain": "reinhard"}),
}


@pytest.fixture(scope="module")
def bundles(tmp_path_factory):
    """Every objective's small bundle, and the test split of its data written as PNG files."""
    root = tmp_path_factory.mktemp("bundles")
    out = {}
    for name, (cfg, params) in BUNDLES.items():
        kind = name.split("-")[0]
        write(root / f"{name}.yaml", yaml.safe_dump({"objective": {"type": kind, **cfg}, "params": params, "seed": 0}))
        run_dir, _ = train(root / f"{name}.yaml", root / name)
        ds = load_dataset(make(kind, cfg).config.dataset)
        index = np.load(run_dir / "predictions.npz")["index"]
        files = root / f"{name}-test"
        files.mkdir()
        for k, i in enumerate(index):  # named in the test split's order: read back in that order
            Image.fromarray(ds.images[i]).save(files / f"{k:04d}.png")
        out[name] = (run_dir, files, ds, index)
    return out


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize("name", list(BUNDLES))
def test_predict_on_the_test_files_reproduces_what_train_scored(bundles, tmp_path, name):
    run_dir, files, ds, index = bundles[name]
    saved = np.load(run_dir / "predictions.npz")
    summary = predict(run_dir, [files], tmp_path / "out")
    assert summary.predicted == len(index) and summary.skipped == 0
    meta = json.loads((run_dir / "model.json").read_text())
    if meta["task"] != "segmentation":
        rows = _rows(tmp_path / "out" / "predictions.csv")
        classes = meta["classes"]
        assert [r["predicted"] for r in rows] == [classes[i] for i in saved["y_pred"]]  # classes: exactly
        col = "p" if "p_" + classes[0] in rows[0] else "score"
        got = np.array([[float(r[f"{col}_{c}"]) for c in classes] for r in rows])
        assert np.allclose(got, saved["proba"], rtol=1e-5, atol=1e-6)  # scores: to float (and CSV) precision
        api = optileuk.load_model(run_dir).scores(sorted(files.iterdir()))
        assert np.allclose(api, saved["proba"], rtol=1e-9, atol=1e-12)  # the Python API: the same numbers
    if meta["task"] == "segmentation":
        target = 255 if meta["spec"]["target"] == "nucleus" else 128
        for k in range(len(index)):
            png = np.asarray(Image.open(tmp_path / "out" / "masks" / f"{k:04d}.png"))
            assert np.array_equal(png >= target, saved[f"pred_{k}"]), f"mask {k} differs"  # pixel for pixel
    if meta["task"] == "both":  # the pipeline: masks and measurements too
        assert len(list((tmp_path / "out" / "masks").iterdir())) == len(index)
        assert len(_rows(tmp_path / "out" / "measurements.csv")) == len(index)


def test_the_cli_with_truth_writes_metrics_as_train_did_and_two_workers_agree(bundles, tmp_path):
    run_dir, files, ds, index = bundles["dknn"]
    labelled = tmp_path / "labelled"  # the test images in class folders: the folder is the truth
    for k, i in enumerate(index):
        (labelled / ds.classes[ds.labels[i]]).mkdir(parents=True, exist_ok=True)
        shutil.copy(files / f"{k:04d}.png", labelled / ds.classes[ds.labels[i]] / f"{k:04d}.png")
    r = run_cli("predict", str(run_dir), str(labelled), "-o", "out", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "out" / "metrics.json").read_text())["classification"]
    want = json.loads((run_dir / "metrics.json").read_text())
    assert got["confusion_matrix"] == want["confusion_matrix"]
    for key in ("accuracy", "balanced_accuracy", "macro_f1", "auc", "balanced_accuracy_ci95"):
        assert got[key] == pytest.approx(want[key]), key
    assert "balanced accuracy" in r.stdout and "images/s" in r.stdout
    r = run_cli("predict", str(run_dir), str(labelled), "-o", "out2", "--workers", "2", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    one, two = _rows(tmp_path / "out" / "predictions.csv"), _rows(tmp_path / "out2" / "predictions.csv")
    assert [x["predicted"] for x in one] == [x["predicted"] for x in two]
    assert np.allclose([float(x["confidence"]) for x in one], [float(x["confidence"]) for x in two], atol=1e-6)


def test_a_corrupt_image_is_skipped_and_listed_strict_exits_2(bundles, tmp_path):
    run_dir, files, _, index = bundles["handcrafted"]
    inputs = tmp_path / "in"
    shutil.copytree(files, inputs)
    (inputs / "zz_broken.png").write_bytes(b"\x89PNG not really")
    Image.fromarray(np.full((20, 30), 200, np.uint8)).save(inputs / "grey.png")  # grey: made RGB
    Image.fromarray(np.full((20, 30, 4), 200, np.uint8)).save(inputs / "rgba.png")  # RGBA: alpha dropped
    r = run_cli("predict", str(run_dir), str(inputs), "-o", "out", "-q", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert r.stderr.count("\n") == 1 and "1 image(s) could not be read" in r.stderr and "skipped.csv" in r.stderr
    skipped = _rows(tmp_path / "out" / "skipped.csv")
    assert [s["file"] for s in skipped] == ["zz_broken.png"] and "cannot be read as an image" in skipped[0]["reason"]
    assert len(_rows(tmp_path / "out" / "predictions.csv")) == len(index) + 2
    r = run_cli("predict", str(run_dir), str(inputs), "-o", "out2", "--strict", "-q", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr and "--strict" in r.stderr


def _bundle_copy(bundles, tmp_path, name="handcrafted") -> Path:
    dst = tmp_path / "bundle"
    shutil.copytree(bundles[name][0], dst)
    return dst


class _Payload:
    """A pickle that creates a file when it is loaded."""

    def __init__(self, path: Path):
        self.path = str(path)

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "ran"))


def test_a_bundle_with_a_crafted_pickle_is_refused_without_running_it(bundles, tmp_path):
    bundle, flag = _bundle_copy(bundles, tmp_path), tmp_path / "PWNED"
    payload = pickle.dumps(_Payload(flag))
    pickle.loads(payload)  # the payload is live: loading it creates the file ...
    assert flag.exists()
    flag.unlink()
    (bundle / "model.pkl").write_bytes(payload)
    r = run_cli("predict", str(bundle), str(bundles["handcrafted"][1]), "-o", "out", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "model.pkl" in r.stderr and "never loads pickles" in r.stderr and "train again" in r.stderr
    assert not flag.exists() and not (tmp_path / "out").exists()  # ... and nothing ran, nothing was written


def test_a_skops_file_with_an_untrusted_type_is_refused_before_it_is_built(bundles, tmp_path, monkeypatch):
    import skops.io as sio
    from sklearn.pipeline import Pipeline
    from sklearn.svm import SVC

    flag = tmp_path / "PWNED"
    write(tmp_path / "mods" / "payload_mod.py", f"""
        from pathlib import Path
        class Payload:
            def __init__(self):
                self.armed = True
            def __setstate__(self, state):
                Path({str(flag)!r}).write_text("ran")
                self.__dict__.update(state)
        """)
    monkeypatch.syspath_prepend(str(tmp_path / "mods"))
    from payload_mod import Payload

    bundle = _bundle_copy(bundles, tmp_path)
    evil = bundle / "estimators.skops"
    sio.dump({"classifier": Pipeline([("scale", Payload()), ("classify", SVC())])}, evil)
    sio.load(evil, trusted=sio.get_untrusted_types(file=evil))  # the payload is live once trusted ...
    assert flag.exists()
    flag.unlink()
    meta = json.loads((bundle / "model.json").read_text())  # an attacker who also fixes the hashes
    meta["files"]["estimators.skops"] = _sha256(evil)
    meta["checksum"] = _checksum(meta)
    (bundle / "model.json").write_text(json.dumps(meta))
    with pytest.raises(BundleError, match="payload_mod.Payload"):
        optileuk.load_model(bundle)
    assert not flag.exists()  # ... and refused before anything was built


@pytest.mark.parametrize("edit, message", [
    (lambda m: m.update(classes=["a", "b", "c", "d"]), "model.json was edited after training"),
    (lambda m: m.update(version=7, checksum="x"), "bundle format version 7 is not one this optileuk reads (1)"),
    (lambda m: m.update(run="rm -rf /"), "run extra inputs are not permitted"),
])
def test_a_tampered_or_unknown_model_json_is_refused(bundles, tmp_path, edit, message):
    bundle = _bundle_copy(bundles, tmp_path)
    meta = json.loads((bundle / "model.json").read_text())
    edit(meta)
    (bundle / "model.json").write_text(json.dumps(meta))
    r = run_cli("predict", str(bundle), str(bundles["handcrafted"][1]), "-o", "out", cwd=tmp_path)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out").exists()


def test_a_changed_weights_file_and_other_bad_inputs_are_one_message(bundles, tmp_path):
    bundle = _bundle_copy(bundles, tmp_path, "dknn")
    weights = bundle / "weights.safetensors"
    weights.write_bytes(weights.read_bytes()[:-8] + b"\0" * 8)
    empty = tmp_path / "empty"
    (empty / "sub").mkdir(parents=True)
    (empty / "sub" / "notes.txt").write_text("no images here")
    cases = [
        ((str(bundle), str(empty)), "weights.safetensors: does not match model.json (SHA-256 differs)"),
        ((str(bundles["dknn"][0]), str(empty)), "empty: no images found"),
        ((str(bundles["dknn"][0]), str(tmp_path / "nope")), "nope: no such image file, folder or dataset spec"),
        ((str(tmp_path / "empty"), str(empty)), "not a model bundle (no model.json)"),
        ((str(bundles["dknn"][0]), str(empty), "--device", "cuda:7"), "objective.device"),
    ]
    from typer.testing import CliRunner

    from optileuk.cli import app

    for args, message in cases:  # in this process (the console script's own path is tested above)
        r = CliRunner().invoke(app, ["predict", *args, "-o", str(tmp_path / "out")])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert message in r.stderr and r.stderr.count("\n") == 1, r.stderr
    assert not (tmp_path / "out").exists()
    from optileuk.data._loaders import as_rgb
    from optileuk.errors import DataError

    with pytest.raises(DataError, match="channels cannot be made RGB"):  # an array no image layout fits
        optileuk.load_model(bundles["dknn"][0]).predict([np.zeros((8, 8, 5), np.uint8)])
    assert as_rgb(np.full((2, 2), 65535, np.uint16)).max() == 255


def test_the_gallery_renders_in_headless_chromium(bundles, tmp_path):
    run_dir, files, ds, index = bundles["pipeline-classical"]
    labelled = tmp_path / "labelled"
    for k, i in enumerate(index):
        (labelled / ds.classes[ds.labels[i]]).mkdir(parents=True, exist_ok=True)
        shutil.copy(files / f"{k:04d}.png", labelled / ds.classes[ds.labels[i]])
    summary = predict(run_dir, [labelled], tmp_path / "out", gallery=True)
    page = tmp_path / "out" / "gallery.html"
    assert "gallery.html" in summary.written and "http" not in page.read_text().split("<body>")[1][:2000]
    dom = dump_dom(page, tmp_path / "chrome", 10000)
    cards = re.findall(r'<div class="card[^"]*" data-i="(\d+)" data-pred="([^"]*)" data-conf="([^"]+)"', dom)
    assert len(cards) == len(index) and all(p in ds.classes for _, p, _ in cards)
    assert dom.count('src="data:image/png;base64,') == len(index)  # every thumbnail (with its overlay) inline
    assert 'id="confusion"' in dom and "balanced accuracy" in dom
    options = re.findall(r'<option value="([^"]+)">', dom)
    assert set(ds.classes) <= set(options) and "asc" in options  # filter by class, sort by confidence


def test_the_readme_python_example_runs(bundles, workdir, capsys):
    run_dir, files, _, _ = bundles["pipeline-classical"]
    shutil.copytree(run_dir, workdir / "runs" / "wbc")
    (workdir / "new_cells").mkdir()
    for k in (1, 2):
        shutil.copy(files / f"{k - 1:04d}.png", workdir / "new_cells" / f"{k:03d}.png")
    readme = (ROOT / "README.md").read_text()
    code = readme.split("In your own scripts and notebooks:", 1)[1].split("```python", 1)[1].split("```", 1)[0]
    exec(compile(code, "README.md", "exec"), {})
    out = capsys.readouterr().out.splitlines()
    model = optileuk.load_model(run_dir)
    assert out[0] == str(model.classes) and all(c in out[1] for c in model.predict(sorted(files.iterdir())[:2]))
    assert out[-1] == str([np.asarray(Image.open(files / f"{k:04d}.png")).shape[:2] for k in (0, 1)])
    masks = model.segment(sorted(files.iterdir())[:2])
    assert masks[0].dtype == np.uint8 and set(np.unique(masks[0])) <= {0, 1, 2} and (masks[0] == 2).any()
    from optileuk.errors import DataError

    with pytest.raises(DataError, match="decision values"):  # an SVM: scores(), not probabilities
        optileuk.load_model(bundles["handcrafted"][0]).predict_proba(sorted(files.glob("*.png"))[:1])


@pytest.mark.skipif(not WBC.is_dir(), reason="shared/data/wbc_seg_cellavision not present")
@pytest.mark.parametrize("study", ["real_unet_tpe.yaml", "real_pipeline_pso.yaml"])
def test_shipped_real_studies_round_trip_through_a_plain_folder(tmp_path, study):
    """export-style config of the shipped study (training shortened) -> train -> the test images copied
    into a plain folder layout -> predict -> the same metrics train reported."""
    data = yaml.safe_load((ROOT / "studies" / study).read_text())
    obj = dict(data["objective"])
    obj["dataset"] = {**obj["dataset"], "path": str(WBC)}
    obj["device"] = "cpu"
    if obj["type"] == "pipeline":
        obj["unet"] = {"epochs": 2, "image_size": 64, "depth": 2, "base": 8}
        params = {"classifier": "logreg", "C": 1.0}
    else:
        obj["image_size"] = 48
        params = {"epochs": 2, "depth": 2, "base": 8, "stain": "reinhard"}
    write(tmp_path / "best.yaml", yaml.safe_dump({"objective": obj, "params": params, "seed": 0}))
    r = run_cli("train", "best.yaml", "-o", "run", "-q", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    saved = np.load(tmp_path / "run" / "predictions.npz")
    ds = load_dataset(make(obj["type"], {k: v for k, v in obj.items() if k != "type"}).config.dataset)
    plain = tmp_path / "plain"
    (plain / "images").mkdir(parents=True)
    (plain / "masks").mkdir()
    rows = ["image,class"]
    for i in saved["index"]:
        src = Path(ds.paths[i])
        shutil.copy(src, plain / "images" / src.name)
        shutil.copy(WBC / "masks" / src.name, plain / "masks" / src.name)
        rows.append(f"{src.stem},{ds.classes[ds.labels[i]]}")
    (plain / "labels.csv").write_text("\n".join(rows) + "\n")
    # on the device it was trained on (cpu): on a GPU the same weights give dice 3e-5 apart (measured, H200)
    r = run_cli("predict", "run", "plain", "-o", "out", "-q", "--device", "cpu", cwd=tmp_path, timeout=600)
    assert r.returncode == 0, r.stderr
    got = json.loads((tmp_path / "out" / "metrics.json").read_text())
    want = json.loads((tmp_path / "run" / "metrics.json").read_text())
    if obj["type"] == "pipeline":
        assert got["classification"]["confusion_matrix"] == want["confusion_matrix"]
        for key in ("accuracy", "balanced_accuracy", "macro_f1", "balanced_accuracy_ci95"):
            assert got["classification"][key] == pytest.approx(want[key]), key
    else:
        for key in ("dice", "iou", "ssim"):
            assert got["segmentation"][key] == pytest.approx(want[key], abs=1e-12), key
