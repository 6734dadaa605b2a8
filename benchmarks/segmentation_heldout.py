"""Tuned segmentation against the untuned baseline on held-out images, for each optimizer.

Runs the shipped studies ``studies/segmentation_<opt>.yaml`` (in memory, shipped budget), then
scores the best config and the untuned baseline -- k-means with k=3 in Lab, darkest cluster as
nucleus, no clean-up -- on the *test split* (never seen by the search).

Run: python benchmarks/segmentation_heldout.py
"""

from __future__ import annotations

import time
from pathlib import Path

from optileuk.config import load_study
from optileuk.objectives._segmentation import BASELINE
from optileuk.runner import Runner

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    print("| optimizer | search-part mean score of best | test Dice | test IoU | test SSIM | test mean | seconds |")
    print("|---|---|---|---|---|---|---|")
    base = None
    for opt in ("pso", "ga", "ssa", "sca", "tpe"):
        t0 = time.perf_counter()
        runner = Runner(load_study(ROOT / "studies" / f"segmentation_{opt}.yaml", storage="memory"))
        summary = runner.run()
        objective = runner._prepared[0]
        test = objective.test_scores(summary.best_params)
        base = base or objective.test_scores(BASELINE)
        print(f"| {opt} | {1 - summary.best_value:.4f} | {test['dice']:.4f} | {test['iou']:.4f} | {test['ssim']:.4f} | "
              f"{test['mean']:.4f} | {time.perf_counter() - t0:.0f} |")
    print(f"| untuned k-means (k=3, Lab, darkest) | - | {base['dice']:.4f} | {base['iou']:.4f} | {base['ssim']:.4f} | "
          f"{base['mean']:.4f} | - |")


if __name__ == "__main__":
    main()
