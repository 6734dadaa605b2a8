"""The features + SVM baseline (the `handcrafted` objective at C=10, default gamma) with grouped 5-fold CV.

* ../shared/data/bccd_cells (real crops; group = source smear image), when present;
* the synthetic 4-class crops (150 per class; group = simulated smear) across difficulties.

Figures are means over the 5 validation folds of the whole dataset (no test split held out here).
Run: python benchmarks/baseline_svm.py
"""

from __future__ import annotations

from pathlib import Path

from optileuk.objectives import make

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT.parent / "shared" / "data" / "bccd_cells"


def score(dataset: dict) -> dict:
    obj = make("handcrafted", {"dataset": dataset, "split": {"test_size": 0.0, "folds": 5}})
    return obj.evaluate({"C": 10.0}).attrs


def main() -> None:
    print("| data | accuracy | balanced accuracy | macro-F1 |")
    print("|---|---|---|---|")
    rows = []
    if BCCD.is_dir():
        rows.append(("bccd_cells (3 classes, 364 source images)",
                     {"type": "folders", "path": str(BCCD), "group_pattern": r"(BloodImage_\d+)"}))
    for d in (0.0, 0.25, 0.5, 0.75, 1.0):
        tag = " (default)" if d == 0.5 else ""
        rows.append((f"synthetic 4 classes, difficulty {d}{tag}", {"type": "synthetic", "n_per_class": 150, "difficulty": d}))
    for name, ds in rows:
        a = score(ds)
        print(f"| {name} | {a['accuracy']:.3f} | {a['balanced_accuracy']:.3f} | {a['macro_f1']:.3f} |")


if __name__ == "__main__":
    main()
