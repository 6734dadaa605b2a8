"""Real cell-type classification: hand features + SVM, dknn, feature_selection and the tuned pipeline.

Data (read in place, never copied):
* ``wbc``: the cell types of ../shared/data/wbc_seg_cellavision (labels.csv; basophils, 3 cells,
  dropped by ``min_per_class: 10``): 97 cells of 4 types. So that every cell is scored once by a
  model tuned and trained without it, the test split is rotated (``split.test_fold`` 0..4 of a
  stratified 5-part split: outer cross-validation); each method is tuned on the other 80% and
  scored on the held-out 20%, and the held-out predictions of the 5 parts are pooled.
* ``bccd``: ../shared/data/bccd_cells (1,431 crops, WBC / RBC / platelets, grouped by source
  image): one held-out test split (test_fold 0, 20%).

Methods (each one's tuning + final training timed on this machine):
1. ``hand+svm``: the ``handcrafted`` objective's defaults (colour/texture/shape features, SVM C=1,
   balanced class weights), no search;
2. ``hand+svm tpe``: the same features, SVM C, gamma, class weights and scaling tuned by TPE;
3. ``dknn``: the ``dknn`` objective's defaults (Kronecker head, on-device augmentation), no search;
4. ``feature_selection ga``: GA over the mask of deep (trunk trained per fold) + hand features;
5. ``pipeline``: on wbc the shipped ``studies/real_pipeline_pso.yaml`` (U-Net per fold, PSO over
   measurement groups and classifier); on bccd, which has no masks, the same search with the
   classical segmentation at its defaults.

Printed: held-out balanced accuracy and macro-F1 with bootstrap 95% intervals (cells resampled),
and the paired bootstrap interval of each method's difference to ``hand+svm``.

Run: python benchmarks/real_classification.py [--sets wbc bccd] [--outer 5] [--trials-scale 1.0]
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import yaml

from optileuk.cli._inspect import export_config
from optileuk.config import study_from_dict
from optileuk.objectives import make
from optileuk.objectives._final import bootstrap_ci
from optileuk.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
SETS = {
    "wbc": {"type": "pairs", "path": str(SHARED / "wbc_seg_cellavision"), "min_per_class": 10},
    "bccd": {"type": "folders", "path": str(SHARED / "bccd_cells"), "group_pattern": r"(BloodImage_\d+)"},
}
HAND_SPACE = {"C": {"type": "float", "low": 0.01, "high": 100.0, "log": True},
              "gamma": {"type": "categorical", "choices": ["scale", "auto"]},
              "class_weight": {"type": "categorical", "choices": ["balanced", "none"]},
              "scaling": {"type": "categorical", "choices": ["standard", "robust"]}}


def tune(data: dict, storage: str, name: str) -> dict:
    """Run a study as ``optileuk run`` does and return its best params as ``optileuk export`` gives them."""
    study = study_from_dict({**data, "name": name, "storage": storage}, ROOT / "studies" / "benchmark.yaml")
    Runner(study).run()
    return export_config(name, storage)["params"]


def methods(set_name: str, ds: dict, fold: int, storage: str, scale: float) -> dict[str, tuple]:
    """{method: (objective type, objective config, params or None to tune, study dict or None)}"""
    split = {"test_size": 0.2, "folds": 3, "test_fold": fold}
    out = {
        "hand+svm": ("handcrafted", {"dataset": ds, "split": split}, {}, None),
        "hand+svm tpe": ("handcrafted", {"dataset": ds, "split": split}, None,
                         {"seed": 0, "objective": {"type": "handcrafted", "dataset": ds, "split": split},
                          "search_space": {"parameters": HAND_SPACE},
                          "optimizer": {"name": "tpe", "population": 1}, "budget": {"trials": int(40 * scale)}}),
        "dknn": ("dknn", {"dataset": ds, "split": {**split, "folds": 1, "val_size": 0.25}, "image_size": 64}, {}, None),
        "feature_selection ga": ("feature_selection", {"dataset": ds, "split": split}, None,
                                 {"seed": 0, "objective": {"type": "feature_selection", "dataset": ds, "split": split},
                                  "search_space": {"parameters": {"features": {"type": "mask", "length": "auto"}}},
                                  "optimizer": {"name": "ga", "population": 20}, "budget": {"trials": int(300 * scale)}}),
    }
    shipped = yaml.safe_load((ROOT / "studies" / "real_pipeline_pso.yaml").read_text())
    obj = {**shipped["objective"], "dataset": ds, "split": split}
    if set_name != "wbc":  # no masks to train a U-Net on
        obj["segmenter"] = "classical"
    shipped = {**shipped, "objective": obj, "budget": {"trials": int(shipped["budget"]["trials"] * scale)}}
    out["pipeline"] = ("pipeline", {k: v for k, v in obj.items() if k != "type"}, None, shipped)
    return out


def summary_row(label: str, y: np.ndarray, pred: np.ndarray, n_classes: int, seconds: float, base=None) -> str:
    from sklearn.metrics import balanced_accuracy_score, f1_score

    ci = bootstrap_ci(y, pred, n_classes, n_boot=5000, seed=0)
    bal, f1 = balanced_accuracy_score(y, pred), f1_score(y, pred, average="macro")
    diff = ""
    if base is not None:  # paired: the same resampled cells for both methods
        draw = np.random.default_rng(1).integers(0, len(y), size=(5000, len(y)))
        d = [balanced_accuracy_score(y[i], pred[i]) - balanced_accuracy_score(y[i], base[i]) for i in draw[:2000]]
        diff = f"{bal - balanced_accuracy_score(y, base):+.3f} [{np.percentile(d, 2.5):+.3f}, {np.percentile(d, 97.5):+.3f}]"
    return (f"| {label} | {bal:.3f} [{ci['balanced_accuracy'][0]:.3f}, {ci['balanced_accuracy'][1]:.3f}] | "
            f"{f1:.3f} [{ci['macro_f1'][0]:.3f}, {ci['macro_f1'][1]:.3f}] | {diff or '–'} | {seconds:.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sets", nargs="+", default=["wbc", "bccd"], choices=list(SETS))
    ap.add_argument("--outer", type=int, default=5, help="held-out parts scored on wbc (1..5)")
    ap.add_argument("--trials-scale", type=float, default=1.0, help="scale every search budget")
    ap.add_argument("--methods", nargs="+", default=None,
                    help="only these methods (hand+svm, the baseline of the paired column, is always run)")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    tmp = Path(tempfile.mkdtemp(prefix="optileuk-bench-"))
    os.environ.setdefault("OPTILEUK_CACHE", str(tmp / "cache"))
    storage = f"sqlite:///{tmp}/bench.db"
    for set_name in args.sets:
        ds = SETS[set_name]
        folds = range(args.outer) if set_name == "wbc" else range(1)
        ys: dict[str, list] = {}
        preds: dict[str, list] = {}
        secs: dict[str, float] = {}
        classes = None
        for fold in folds:
            for label, (kind, cfg, params, study) in methods(set_name, ds, fold, storage, args.trials_scale).items():
                if args.methods and label != "hand+svm" and label not in args.methods:
                    continue
                start = time.perf_counter()
                if params is None:
                    params = tune(study, storage, f"{set_name}-{label.replace(' ', '-').replace('+', '-')}-{fold}")
                final = make(kind, cfg, seed=0).train_final(params)
                secs[label] = secs.get(label, 0.0) + time.perf_counter() - start
                ys.setdefault(label, []).append(final.predictions["y_true"])
                preds.setdefault(label, []).append(final.predictions["y_pred"])
                classes = final.metrics["classes"]
                print(f"{set_name} part {fold} {label}: held-out balanced accuracy "
                      f"{final.metrics['balanced_accuracy']:.3f} ({secs[label]:.0f} s so far)", flush=True)
        y = np.concatenate(ys["hand+svm"])
        base = np.concatenate(preds["hand+svm"])
        print(f"\n{set_name}: {len(y)} held-out cells ({', '.join(classes)}), "
              f"{len(list(folds))} held-out part(s)\n")
        print("| method | balanced accuracy [95% CI] | macro-F1 [95% CI] | vs hand+svm [paired 95% CI] | seconds (all parts) |")
        print("|---|---|---|---|---|")
        for label in ys:
            assert np.array_equal(np.concatenate(ys[label]), y)  # every method scores the same cells
            print(summary_row(label, y, np.concatenate(preds[label]), len(classes), secs[label],
                              None if label == "hand+svm" else base))
        print(flush=True)


if __name__ == "__main__":
    main()
