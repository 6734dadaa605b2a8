"""Best value after N evaluations on 10-D Rastrigin and sphere, median over seeds, per optimizer.

Uses the shipped studies ``studies/rastrigin_<optimizer>.yaml`` (same space, budget and seeds
for every optimizer; in-memory storage). Prints a Markdown table for docs/benchmarks.md.

Run: python benchmarks/optimizer_quality.py [--seeds 5] [--evals 600]
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from optileuk.config import load_study
from optileuk.objectives._analytic import AnalyticConfig
from optileuk.runner import Runner

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = ["pso", "ga", "ssa", "sca", "tpe", "random"]


def best_values(optimizer: str, function: str, seeds: list[int], evals: int) -> list[float]:
    out = []
    for seed in seeds:
        study = load_study(ROOT / "studies" / f"rastrigin_{optimizer}.yaml", trials=evals, seed=seed, storage="memory")
        study.objective_config = AnalyticConfig(function=function)
        out.append(Runner(study).run().best_value)
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evals", type=int, default=600)
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    print(f"median (min-max) best value after {args.evals} evaluations, seeds {seeds}, 10-D, box [-5.12, 5.12]\n")
    print("| optimizer | rastrigin | sphere | seconds |")
    print("|---|---|---|---|")
    for opt in OPTIMIZERS:
        t0 = time.perf_counter()
        cells = []
        for fn in ("rastrigin", "sphere"):
            v = best_values(opt, fn, seeds, args.evals)
            cells.append(f"{statistics.median(v):.3g} ({min(v):.3g}-{max(v):.3g})")
        print(f"| {opt} | {cells[0]} | {cells[1]} | {time.perf_counter() - t0:.1f} |")


if __name__ == "__main__":
    main()
