"""Does pruning cut training without hurting the result? DKNN, median pruner vs none, same budget.

For each seed: PSO (population 6) runs 24 candidates of `dknn` (synthetic crops, 150 per class,
10 epochs each, searching lr, weight decay and rank1) twice -- without a pruner and with
`pruner: {name: median, n_startup_trials: 6, n_warmup_steps: 2}` -- in memory. Epochs trained =
epochs reported (pruned trials stop early) or trained (``epochs_trained``). Best value = 1 - balanced accuracy (validation).

Run: python benchmarks/pruning.py [--seeds 3]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from optileuk.config import load_study
from optileuk.runner import Runner

STUDY = """
name: prune-{mode}-{seed}
seed: {seed}
objective:
  type: dknn
  dataset: {{type: synthetic, n_per_class: 150}}
  augment: {{copies: 0}}
  defaults: {{epochs: 10}}
search_space:
  parameters:
    lr: {{type: float, low: 1.0e-4, high: 3.0e-2, log: true}}
    weight_decay: {{type: float, low: 1.0e-6, high: 1.0e-2, log: true}}
    rank1: {{type: int, low: 1, high: 6}}
optimizer: {{name: pso, population: 6}}
budget: {{trials: 24}}
{pruner}
"""


def run(folder: Path, mode: str, seed: int) -> tuple[int, float, int]:
    pruner = "pruner: {name: median, n_startup_trials: 6, n_warmup_steps: 2}" if mode == "median" else ""
    path = folder / f"{mode}{seed}.yaml"
    path.write_text(STUDY.format(mode=mode, seed=seed, pruner=pruner))
    runner = Runner(load_study(path, storage="memory"))
    summary = runner.run()
    study: optuna.Study = runner._prepared[3]
    # without a pruner trials report nothing live: count the epochs each one says it trained
    epochs = sum(len(t.intermediate_values) or t.user_attrs.get("epochs_trained", 0) for t in study.trials)
    return epochs, summary.best_value, summary.pruned


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=3)
    args = ap.parse_args()
    rows = {"none": [], "median": []}
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for mode in rows:
                rows[mode].append(run(Path(tmp), mode, seed))
    print("| pruner | epochs trained per seed | total epochs | pruned trials | best value per seed | median best |")
    print("|---|---|---|---|---|---|")
    for mode, r in rows.items():
        print(f"| {mode} | {', '.join(str(e) for e, _, _ in r)} | {sum(e for e, _, _ in r)} | "
              f"{sum(p for _, _, p in r)} | {', '.join(f'{b:.4f}' for _, b, _ in r)} | {statistics.median(b for _, b, _ in r):.4f} |")
    cut = 1 - sum(e for e, _, _ in rows["median"]) / sum(e for e, _, _ in rows["none"])
    print(f"\nepochs cut by pruning: {cut:.0%}  ({time.perf_counter() - t0:.0f} s)")


if __name__ == "__main__":
    main()
