"""Batched evaluation on Dask workers: an objective that ``batches`` (feature_selection: one KNN
distance computation per fold for a whole population of masks) sent as one task per worker slot,
against one task per candidate -- the same study, side by side in one run.

The study: feature_selection on embedded synthetic crops (hand-crafted features only, so every
candidate is a cheap KNN scoring), GA with population 32, 256 trials, 2 local Dask workers, SQLite.
Times are ``Runner.run()`` (cluster start included); the values of both runs are checked equal.

Run: python benchmarks/batches.py [--trials 256] [--population 32]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import optuna

from optileuk.config import load_study
from optileuk.objectives._feature_selection import FeatureSelectionObjective
from optileuk.runner import Runner

STUDY = """name: {name}
seed: 0
objective: {{type: feature_selection, features: [handcrafted],
             dataset: {{type: synthetic, n_per_class: 60, size: 48, smears: 16}},
             split: {{test_size: 0.2, folds: 3}}}}
search_space: {{parameters: {{features: {{type: mask, length: auto}}}}}}
optimizer: {{name: ga, population: {population}}}
budget: {{trials: {trials}}}
runner: {{workers: 2}}
"""


def timed(folder: Path, name: str, trials: int, population: int) -> tuple[float, dict]:
    path = folder / f"{name}.yaml"
    path.write_text(STUDY.format(name=name, trials=trials, population=population))
    url = f"sqlite:///{folder / 'b.db'}"
    start = time.perf_counter()
    Runner(load_study(path, storage=url)).run()
    seconds = time.perf_counter() - start
    trials_ = optuna.load_study(study_name=name, storage=url).get_trials()
    return seconds, {(t.user_attrs["generation"], t.user_attrs["index"]): t.value for t in trials_}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=256)
    ap.add_argument("--population", type=int, default=32)
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    folder = Path(tempfile.mkdtemp(prefix="optileuk-batches-bench-"))
    timed(folder, "warm", args.population, args.population)  # the data and feature caches, filled once
    batched, values_b = timed(folder, "batched", args.trials, args.population)
    FeatureSelectionObjective.batches = False  # the driver then sends one task per candidate
    single, values_s = timed(folder, "single", args.trials, args.population)
    same = values_b == values_s
    print(f"feature_selection, {args.trials} trials, population {args.population}, 2 Dask workers:")
    print(f"  one task per candidate   : {single:6.2f} s")
    print(f"  one task per worker slot : {batched:6.2f} s  ({single / batched:.2f}x faster)")
    print(f"  same values: {same}")


if __name__ == "__main__":
    main()
