"""Feature selection on ../shared/data/bccd_cells: the shipped GA study against all features.

Runs ``studies/bccd_feature_selection_ga.yaml`` (in memory, shipped budget) and prints the share of
features kept and the balanced accuracy (3-fold grouped CV on the search part; the test split
is held out) against the same KNN on every feature.

Run from the repository root: python benchmarks/feature_selection_bccd.py
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import numpy as np

from optileuk.config import load_study
from optileuk.runner import Runner

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    os.chdir(ROOT)
    t0 = time.perf_counter()
    runner = Runner(load_study(ROOT / "studies" / "bccd_feature_selection_ga.yaml", storage="memory"))
    summary = runner.run()
    objective, space, storage, study = runner._prepared
    best = study.best_trial
    mask = space.from_record(best.params, best.user_attrs)["features"]
    sel = objective.evaluate({"features": mask}).attrs
    full = objective.evaluate({"features": np.ones(objective.n_features, bool)}).attrs
    print(f"evaluations: {summary.trials}, seconds: {time.perf_counter() - t0:.0f}")
    print("| features | kept | share | balanced accuracy | accuracy | macro-F1 |")
    print("|---|---|---|---|---|---|")
    for name, a in (("all", full), ("selected by GA", sel)):
        print(f"| {name} | {a['selected']} of {a['total']} | {a['selected'] / a['total']:.1%} | "
              f"{a['balanced_accuracy']:.4f} | {a['accuracy']:.4f} | {a['macro_f1']:.4f} |")


if __name__ == "__main__":
    main()
