"""`optileuk assess`: nested cross-validation over approaches, no leak from a held-out part, resume after a
kill, --external, the shortcut audit, clear refusals, and the report's section."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

from conftest import ROOT, dump_dom, optileuk_exe, run_cli, write

SHARED = ROOT.parent / "shared" / "data"
SYN = {"type": "synthetic", "n_per_class": 20, "size": 32}


def study(path: Path, name: str, objective: dict, space: dict, optimizer: dict, trials: int, **extra) -> Path:
    data = {"name": name, "seed": 0, "objective": objective, "search_space": {"parameters": space},
            "optimizer": optimizer, "budget": {"trials": trials}, **extra}
    return write(path, yaml.safe_dump(data, sort_keys=False))


def hand(workdir: Path, name: str = "syn-hand", trials: int = 6, **objective) -> Path:
    return study(workdir / f"{name}.yaml", name, {"type": "handcrafted", "dataset": SYN,
                                                   "split": {"test_size": 0.2, "folds": 3}, **objective},
                 {"C": {"type": "float", "low": 0.1, "high": 10.0, "log": True}}, {"name": "random", "population": 3},
                 trials, runner={"flush_seconds": 0})


def dknn(workdir: Path, name: str = "syn-dknn", **objective) -> Path:
    return study(workdir / f"{name}.yaml", name, {"type": "dknn", "dataset": SYN, "widths": [8, 16], "hidden": 16,
                                                   "defaults": {"epochs": 2}, **objective},
                 {"rank1": {"type": "int", "low": 0, "high": 2}}, {"name": "random", "population": 2}, 2)


def test_assess_pools_every_item_once_and_no_held_out_item_is_ever_fitted_on(workdir, monkeypatch):
    """Instrumented objectives: every fit (stain reference, scaler + classifier, network) of every inner search
    and final training is recorded at the level of the items it saw; none is ever of the part held out."""
    import sklearn.pipeline

    import optileuk.assess._run as run_mod
    import optileuk.data._stain as stain_mod
    import optileuk.objectives._dknn as dknn_mod
    from optileuk.assess import assess
    from optileuk.data import SyntheticData, load_dataset
    from optileuk.features import handcrafted_features
    from optileuk.objectives._torch import image_tensor

    ds = load_dataset(SyntheticData(**SYN))
    by_pixels = {hashlib.sha1(im.tobytes()).hexdigest(): i for i, im in enumerate(ds.images)}
    by_features = {np.round(row, 10).tobytes(): i for i, row in enumerate(handcrafted_features(ds.images, 64, "stretch"))}
    by_tensor = {t.numpy().tobytes(): i for i, t in enumerate(image_tensor(ds.images, 32, "pad"))}
    current: list = [None]
    seen: list[tuple] = []  # (job label, part, what, item indices)

    real_job = run_mod.run_job

    def run_job(job, **kw):
        current[0] = job
        try:
            return real_job(job, **kw)
        finally:
            current[0] = None

    real_montage = stain_mod.montage

    def montage(images, *a, **kw):
        if current[0] is not None:
            seen.append((current[0].approach.label, current[0].part, "stain reference",
                         {by_pixels[hashlib.sha1(np.ascontiguousarray(im).tobytes()).hexdigest()] for im in images}))
        return real_montage(images, *a, **kw)

    real_fit = sklearn.pipeline.Pipeline.fit

    def pipeline_fit(self, X, y=None, **kw):
        job = current[0]
        if job is not None and job.approach.label == "syn-hand":  # raw (unstained) features: rows name their items
            seen.append((job.approach.label, job.part, "scaler + classifier",
                         {by_features[np.round(r, 10).tobytes()] for r in np.asarray(X)}))
        return real_fit(self, X, y, **kw)

    real_torch_fit = dknn_mod.fit

    def torch_fit(model, x, y, **kw):
        job = current[0]
        seen.append((job.approach.label, job.part, "network", {by_tensor[t.cpu().numpy().tobytes()] for t in x}))
        return real_torch_fit(model, x, y, **kw)

    monkeypatch.setattr(run_mod, "run_job", run_job)
    monkeypatch.setattr(stain_mod, "montage", montage)
    monkeypatch.setattr(sklearn.pipeline.Pipeline, "fit", pipeline_fit)
    monkeypatch.setattr(dknn_mod, "fit", torch_fit)
    paths = [hand(workdir), dknn(workdir), hand(workdir, "syn-stain", stain="reinhard")]
    summary = assess(paths, k=4, output=workdir / "assess.json")

    from optileuk.data._splits import outer_parts

    parts = outer_parts(ds, 4)
    whats = {(label, what) for label, _, what, _ in seen}
    assert {("syn-hand", "scaler + classifier"), ("syn-dknn", "network"), ("syn-stain", "stain reference")} <= whats
    for label, part, what, items in seen:  # the inner searches and the final trainings of every part
        assert part >= 0 and items and not items & set(parts[part].tolist()), (label, part, what)
    finals = [items for label, part, what, items in seen if label == "syn-hand" and len(items) == len(ds) - len(parts[part])]
    assert len(finals) == 4  # each final model saw every item but its part's
    written = json.loads((workdir / "assess.json").read_text())
    for label, a in summary["approaches"].items():  # pooled: every item once; the figure recomputed from the items
        pred = written["predictions"][label]
        assert sorted(pred["file"]) == sorted(ds.paths) and len(pred["file"]) == len(ds)
        from sklearn.metrics import balanced_accuracy_score

        assert a["pooled"]["balanced_accuracy"] == pytest.approx(balanced_accuracy_score(pred["truth"], pred["predicted"]))
        assert [r["items"] for r in a["parts"]] == [len(p) for p in parts]
    assert summary["paired"] and summary["verdict"].startswith(summary["ranking"][0])


def _count(db: Path) -> int:
    if not db.exists():
        return 0
    try:
        with sqlite3.connect(db, timeout=1) as c:
            return c.execute("select count(*) from trials where state = 'COMPLETE'").fetchone()[0]
    except sqlite3.Error:
        return 0


def test_killed_mid_way_and_rerun_loses_nothing_and_ends_as_a_straight_run(workdir):
    spec = hand(workdir, trials=100)
    straight = run_cli("assess", str(spec), "--outer", "3", "--storage", f"sqlite:///{workdir}/straight.db",
                       "-o", "straight.json", "-q", cwd=workdir)
    assert straight.returncode == 0, straight.stderr
    proc = subprocess.Popen([optileuk_exe(), "assess", str(spec), "--outer", "3", "-o", "killed.json", "-q"], cwd=workdir,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while _count(workdir / "optileuk.db") < 150 and time.time() < deadline and proc.poll() is None:
        time.sleep(0.02)
    assert proc.poll() is None, "the assessment finished before it could be killed"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _count(workdir / "optileuk.db")
    assert 100 < before < 300  # killed inside the second part's search
    r = run_cli("assess", str(spec), "--outer", "3", "-o", "killed.json", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    import optuna

    for i in range(3):
        name = f"syn-hand.outer{i}of3"
        a = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/optileuk.db").trials
        b = optuna.load_study(study_name=name, storage=f"sqlite:///{workdir}/straight.db").trials
        assert len(a) == len(b) == 100 and all(t.state.name == "COMPLETE" for t in a)
        assert [t.params for t in a] == [t.params for t in b]  # the same candidates, none twice
    killed, ref = (json.loads((workdir / f).read_text()) for f in ("killed.json", "straight.json"))
    assert killed["predictions"] == ref["predictions"] and killed["approaches"]["syn-hand"]["pooled"] == \
        ref["approaches"]["syn-hand"]["pooled"]


def _write_classes(root: Path, ds, classes=None) -> Path:
    for i, im in enumerate(ds.images):
        name = (classes or ds.classes)[ds.labels[i]]
        (root / name).mkdir(parents=True, exist_ok=True)
        Image.fromarray(im).save(root / name / f"{i:04d}.png")
    return root


def test_external_scores_another_stain_and_unknown_classes_are_refused(workdir):
    from optileuk.data import SyntheticData, load_dataset

    other = load_dataset(SyntheticData(**{**SYN, "n_per_class": 6, "seed": 7, "realism": {"stain_jitter": 0.3}}))
    _write_classes(workdir / "other_lab", other)
    r = run_cli("assess", str(hand(workdir)), "--outer", "3", "--external", "other_lab", "-o", "a.json", cwd=workdir)
    assert r.returncode == 0, r.stderr
    ext = json.loads((workdir / "a.json").read_text())["approaches"]["syn-hand"]["external"]
    assert ext["images"] == len(other) and 0 <= ext["metrics"]["balanced_accuracy"] <= 1
    assert ext["metrics"]["n_test"] == len(other) and "external other_lab" in r.stdout
    _write_classes(workdir / "alien", other, ["normal", "L1", "neutrophil", "lymphoma"])
    (workdir / "fresh").mkdir()
    r = run_cli("assess", str(hand(workdir)), "--outer", "3", "--external", str(workdir / "alien"), cwd=workdir / "fresh")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "holds classes the models never saw: lymphoma, neutrophil" in r.stderr and r.stderr.count("\n") == 1
    assert not any((workdir / "fresh").iterdir())  # nothing written: no storage, no assess.json


def test_bad_assessments_are_one_message_each_and_write_nothing(workdir):
    good = hand(workdir)
    other = hand(workdir, "syn-other")
    other_data = yaml.safe_load(other.read_text())
    other_data["objective"]["dataset"] = {**SYN, "n_per_class": 21}
    other.write_text(yaml.safe_dump(other_data))
    multi = study(workdir / "multi.yaml", "syn-multi", {"type": "dknn", "dataset": SYN, "widths": [8, 16],
                                                        "defaults": {"epochs": 1}},
                  {"rank1": {"type": "int", "low": 0, "high": 2}}, {"name": "nsga2", "population": 4}, 4,
                  objectives=["error", "head_params"])
    seg = study(workdir / "seg.yaml", "syn-seg", {"type": "segmentation", "dataset": SYN},
                {"k": {"type": "int", "low": 2, "high": 4}}, {"name": "random", "population": 2}, 2)
    small = hand(workdir, "syn-small")
    small.write_text(small.read_text().replace("n_per_class: 20", "n_per_class: 6"))
    slides = hand(workdir, "syn-slides")
    slides.write_text(slides.read_text().replace("n_per_class: 20", "n_per_class: 20\n    smears: 4"))
    cases = [
        ((str(good), "--outer", "25"), "--outer"),
        ((str(small), "--outer", "8"), "class(es) normal (6), L1 (6), L2 (6), L3 (6) have fewer items than the 8 outer"),
        ((str(slides), "--outer", "5"), "4 groups (patients, slides or source images) cannot make 5 outer parts"),
        ((str(good), str(other)), "syn-other.yaml: objective.dataset must be the data of"),
        ((str(good), str(multi)), "multi.yaml: objectives are several values: give --pick"),
        ((str(good), str(seg)), "seg.yaml: objective.type is a segmentation objective"),
        (("nope.yaml",), "nope.yaml"),
        ((str(good), "--references", str(write(workdir / "refs.yaml", "references:\n  - {label: fixed, params: {C: 2.0}, "
                                                 "study: syn-nope}\n"))),
         "refs.yaml: references[0].study must name one of the assessed studies (syn-hand), got 'syn-nope'"),
    ]
    from typer.testing import CliRunner

    from optileuk.cli import app

    for args, message in cases:  # in this process: the console script's own path is tested above
        r = CliRunner().invoke(app, ["assess", *args])
        assert r.exit_code == 2 and "Traceback" not in r.output, r.output
        assert message in r.stderr, (args, r.stderr)
    assert not (workdir / "optileuk.db").exists() and not (workdir / "assess.json").exists()


def _planted(kind: str):
    """Synthetic crops with a shortcut planted: each class cropped at its own margin (size), or photographed
    on slides of its own background brightness (border)."""
    from optileuk.data import Dataset, SyntheticData, load_dataset

    ds = load_dataset(SyntheticData(**{**SYN, "n_per_class": 30}))
    images = []
    for im, lab in zip(ds.images, ds.labels):
        if kind == "size":
            im = np.pad(im, ((3 * lab, 3 * lab), (3 * lab, 3 * lab), (0, 0)), mode="edge")
        if kind == "border":
            im = im.copy()
            v = 170 + 25 * lab
            im[:3], im[-3:], im[:, :3], im[:, -3:] = v, v, v, v
        images.append(im)
    return Dataset(images, ds.labels, ds.classes, None, ds.groups, ds.paths, name=f"planted {kind}")


@pytest.mark.parametrize("kind", ["size", "border", "none"])
def test_the_audit_flags_a_planted_shortcut_and_not_clean_data(kind):
    from optileuk.assess import audit
    from optileuk.data._splits import outer_parts

    ds = _planted(kind)
    a = audit(ds, outer_parts(ds, 5))
    flagged = {name for name, r in a["shortcuts"].items() if r["flag"]}
    if kind == "none":
        assert not flagged and not a["warnings"]
    else:
        assert kind in flagged and any(a["shortcuts"][kind]["sees"] in w for w in a["warnings"])


def test_the_audit_finds_duplicates_across_parts():
    from optileuk.assess import audit
    from optileuk.data import Dataset

    ds = _planted("none")
    images = list(ds.images)
    images[5] = images[0].copy()  # the same crop twice, in different groups
    images[9] = np.clip(images[1].astype(int) + 3, 0, 255).astype(np.uint8)  # and a re-saved, slightly brighter one
    ds = Dataset(images, ds.labels, ds.classes, None, None, ds.paths)
    from optileuk.data._splits import outer_parts

    dup = audit(ds, outer_parts(ds, 5))["duplicates"]
    assert dup["exact_pairs_across_parts"] + dup["near_pairs_across_parts"] >= 1


@pytest.mark.parametrize("name, flagged", [("bccd_cells", True), ("wbc_seg_cellavision", False),
                                           ("pbc_blood_cells", False)])
def test_the_audit_of_the_shared_real_sets(workdir, name, flagged):
    if not (SHARED / name).is_dir():
        pytest.skip(f"shared/data/{name} not present")
    args = ["data", "audit", str(SHARED / name), "-o", "audit.json"]
    if name == "bccd_cells":
        args += ["--group-pattern", r"(BloodImage_\d+)"]
    r = run_cli(*args, cwd=workdir, timeout=600)
    assert r.returncode == 0, r.stderr
    a = json.loads((workdir / "audit.json").read_text())
    assert a["shortcuts"]["size"]["flag"] is flagged and bool(a["warnings"]) is flagged
    assert ("SHORTCUT" in r.stdout) is flagged and ("warning: a model that sees only the image size" in r.stderr) is flagged


def test_the_report_draws_the_assessment_in_headless_chromium(workdir):
    r = run_cli("assess", str(hand(workdir)), str(hand(workdir, "syn-knn", classifier="knn")), "--outer", "3",
                "--untuned", "-q", cwd=workdir)
    assert r.returncode == 0, r.stderr
    r = run_cli("report", "-o", "report.html", cwd=workdir)
    assert r.returncode == 0 and "1 assessment(s)" in r.stderr, r.stderr
    dom = dump_dom(workdir / "report.html", workdir / "chrome")
    import re

    kinds = [f.split('"', 1)[0] for f in re.split(r'<div class="figure" data-kind="', dom)[1:]]
    assert sorted(kinds) == ["assess-confusion", "assess-optimism", "assess-paired", "assess-parts"], kinds
    for html in re.split(r'<div class="figure" data-kind="', dom)[1:]:
        assert 'class="main-svg"' in html and re.search(r'<g class="(trace|hm)[ "]', html)  # heatmaps draw an hm layer
    assert "Which approach for these data:" in dom and "Shortcut audit" in dom and "syn-hand-untuned (reference)" in dom
