"""Segmentation per image cold vs cached, and population-vectorised mask evaluation vs one by one.

* segmentation: the default objective (42 synthetic crops); a candidate that needs new
  clusterings (cold) against one that differs only in post-processing (cached clusterings).
* feature selection: 40 random masks over the bccd_cells features (or synthetic ones when the
  folder is absent), KNN (k=5), 3 folds: ``evaluate_many`` (one batched pass) against
  ``evaluate`` per mask, and against scikit-learn's KNeighborsClassifier per mask.

Run: python benchmarks/objectives_speed.py
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
from sklearn.neighbors import KNeighborsClassifier

from optileuk.objectives import make
from optileuk.objectives._segmentation import BASELINE

ROOT = Path(__file__).resolve().parents[1]
BCCD = ROOT.parent / "shared" / "data" / "bccd_cells"


def seconds(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def main() -> None:
    seg = make("segmentation", {})
    seg.prepare()
    n = len(seg._truth)
    cold = seconds(lambda: seg.evaluate(BASELINE))
    warm = seconds(lambda: seg.evaluate({**BASELINE, "opening": 1, "fill_holes": True}))
    print(f"segmentation, {n} images: cold {cold / n * 1e3:.1f} ms/image, cached clusterings "
          f"{warm / n * 1e3:.2f} ms/image, ratio {cold / warm:.0f}x")

    data = ({"type": "folders", "path": str(BCCD), "group_pattern": r"(BloodImage_\d+)"} if BCCD.is_dir()
            else {"type": "synthetic"})
    fs = make("feature_selection", {"dataset": data})
    fs.prepare()
    rng = np.random.default_rng(0)
    configs = [{"features": rng.random(fs.n_features) < 0.3} for _ in range(40)]
    batched = seconds(lambda: fs.evaluate_many(configs))
    single = seconds(lambda: [fs.evaluate(c) for c in configs])

    def sklearn_each():
        for c in configs:
            m = c["features"]
            for xtr, ytr, xva, _ in fs._folds:
                KNeighborsClassifier(5).fit(xtr[:, m], ytr).predict(xva[:, m])

    sk = seconds(sklearn_each)
    print(f"feature selection, 40 masks x {len(fs._folds)} folds, {fs.n_features} features "
          f"({'bccd_cells' if BCCD.is_dir() else 'synthetic'}): one batched pass {batched:.3f} s, "
          f"one mask at a time {single:.3f} s ({single / batched:.1f}x), "
          f"scikit-learn KNN per mask {sk:.3f} s ({sk / batched:.1f}x)")


if __name__ == "__main__":
    main()
