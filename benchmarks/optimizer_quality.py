"""Best value after N evaluations on analytic test functions, median over seeds, per optimizer --
ours beside the strongest general-purpose optimizers (CMA-ES, GP-BO, quasi-random, nevergrad's NGOpt).

Every run goes through ``optileuk run``'s runner (in-memory storage): the same box, budget and
seeds for every optimizer. Printed (Markdown, for docs/benchmarks.md):

1. 600 evaluations, 10-D and 30-D, Rastrigin, sphere, Rosenbrock and Ackley, each with its optimum
   moved off the box's centre (``SHIFT``: CMA-ES and nevergrad start at the centre): median (min-max) over
   the seeds, and each optimizer's own wall time per candidate (the runner's bookkeeping, the same
   for all, included; the functions themselves cost microseconds);
2. a small budget (``--small-evals``, default 60) where Gaussian-process BO is affordable, beside TPE,
   CMA-ES, quasi-random and random at the same budget;
3. the GP's own cost per candidate as the study grows (100, 300, 1,000 finished trials, 10-D).

Run: python benchmarks/optimizer_quality.py [--seeds 5] [--evals 600] [--dims 10 30] [--crosscheck]
"""

from __future__ import annotations

import argparse
import statistics
import time
import warnings
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OPTIMIZERS = {  # label: optimizer section (the shipped studies' settings for ours)
    "pso": {"name": "pso", "population": 20},
    "ga": {"name": "ga", "population": 30},
    "ssa": {"name": "ssa", "population": 20},
    "sca": {"name": "sca", "population": 20},
    "tpe": {"name": "tpe", "population": 4},
    "random": {"name": "random", "population": 20},
    "qmc": {"name": "qmc", "population": 20},
    "cmaes": {"name": "cmaes"},
    "cmaes ipop": {"name": "cmaes", "restart": "ipop"},
    "nevergrad NGOpt": {"name": "nevergrad", "population": 4},
}
CROSSCHECK = {f"nevergrad {n}": {"name": f"nevergrad:{n}", "population": 20}
              for n in ("PSO", "DE", "TwoPointsDE", "OnePlusOne", "CMA")}
SMALL = {"gp": {"name": "gp", "population": 1, "n_startup_trials": 10},
         "tpe": {"name": "tpe", "population": 1, "n_startup_trials": 10},
         "cmaes": {"name": "cmaes"}, "qmc": {"name": "qmc", "population": 4}, "random": {"name": "random", "population": 4}}
FUNCTIONS = ("rastrigin", "sphere", "rosenbrock", "ackley")
SHIFT = 1.234  # the optimum at x_i = 1.234 (Rosenbrock's at 2.234): not the box's centre, where CMA-ES and
# nevergrad start (nevergrad's first candidate *is* the centre: with the optimum there, OnePlusOne "finds" 0)


def study(optimizer: dict, function: str, dim: int, seed: int, evals: int):
    from optileuk.config import study_from_dict

    data = {"name": "quality", "seed": seed, "storage": "memory",
            "objective": {"type": "analytic", "function": function, "shift": SHIFT},
            "search_space": {"parameters": {f"x{i}": {"type": "float", "low": -5.12, "high": 5.12} for i in range(dim)}},
            "optimizer": optimizer, "budget": {"trials": evals}}
    return study_from_dict(data, ROOT / "studies" / "benchmark.yaml")


def best_values(optimizer: str | dict, function: str, seeds: list[int], evals: int, dim: int = 10) -> list[float]:
    """Best value of each seed's run (``optimizer``: a label of :data:`OPTIMIZERS` or a section)."""
    from optileuk.runner import Runner

    spec = OPTIMIZERS[optimizer] if isinstance(optimizer, str) else optimizer
    return [Runner(study(spec, function, dim, seed, evals)).run().best_value for seed in seeds]


def cell(values: list[float]) -> str:
    return f"{statistics.median(values):.3g} ({min(values):.3g}-{max(values):.3g})"


def table(optimizers: dict, functions, dims, seeds, evals) -> None:
    cols = [f"{fn} {d}-D" for d in dims for fn in functions]
    print("| optimizer | " + " | ".join(cols) + " | ms per candidate |")
    print("|---|" + "---|" * (len(cols) + 1))
    for label, spec in optimizers.items():
        start, cells = time.perf_counter(), []
        for d in dims:
            for fn in functions:
                cells.append(cell(best_values(spec, fn, seeds, evals, d)))
        ms = 1000 * (time.perf_counter() - start) / (evals * len(seeds) * len(cols))
        print(f"| {label} | " + " | ".join(cells) + f" | {ms:.1f} |", flush=True)


def gp_cost(sizes=(100, 300, 1000), dim: int = 10, asks: int = 3) -> None:
    """Seconds the GP sampler takes to propose one candidate once the study holds ``n`` finished trials."""
    import numpy as np
    import optuna
    from optuna.distributions import FloatDistribution

    optuna.logging.set_verbosity(optuna.logging.ERROR)
    dists = {f"x{i}": FloatDistribution(-5.12, 5.12) for i in range(dim)}
    rng = np.random.default_rng(0)
    print("| finished trials | GP seconds per candidate | TPE seconds per candidate |")
    print("|---|---|---|")
    for n in sizes:
        row = []
        for sampler in (optuna.samplers.GPSampler(seed=0), optuna.samplers.TPESampler(seed=0, multivariate=True)):
            s = optuna.create_study(sampler=sampler)
            for _ in range(n):
                x = {k: float(rng.uniform(-5.12, 5.12)) for k in dists}
                s.add_trial(optuna.trial.create_trial(params=x, distributions=dists,
                                                      value=float(sum(v * v for v in x.values()))))
            start = time.perf_counter()
            for _ in range(asks):
                t = s.ask(dists)
                s.tell(t, float(sum(v * v for v in t.params.values())))
            row.append((time.perf_counter() - start) / asks)
        print(f"| {n} | {row[0]:.2f} | {row[1]:.3f} |", flush=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--evals", type=int, default=600)
    ap.add_argument("--dims", type=int, nargs="+", default=[10, 30])
    ap.add_argument("--functions", nargs="+", default=list(FUNCTIONS))
    ap.add_argument("--small-evals", type=int, default=60)
    ap.add_argument("--crosscheck", action="store_true", help="also nevergrad's PSO, DE, TwoPointsDE, OnePlusOne, CMA")
    ap.add_argument("--parts", nargs="+", default=["main", "small", "gp-cost"])
    ap.add_argument("--only", nargs="+", default=None, help="only these rows of the main table")
    args = ap.parse_args()
    warnings.simplefilter("ignore")
    seeds = list(range(args.seeds))
    if "main" in args.parts:
        print(f"median (min-max) best value after {args.evals} evaluations, seeds {seeds}, box [-5.12, 5.12]^D, "
              f"optimum at x_i = {SHIFT}\n")
        rows = {**OPTIMIZERS, **(CROSSCHECK if args.crosscheck else {})}
        rows = {k: v for k, v in rows.items() if not args.only or k in args.only}
        table(rows, args.functions, args.dims, seeds, args.evals)
    if "small" in args.parts:
        print(f"\nmedian (min-max) best value after {args.small_evals} evaluations (10 of them random starts for "
              f"gp and tpe), seeds {seeds}\n")
        table(SMALL, ("rastrigin", "sphere"), args.dims, seeds, args.small_evals)
    if "gp-cost" in args.parts:
        print("\nthe GP's own cost as the study grows (10-D sphere, mean of 3 candidates)\n")
        gp_cost()


if __name__ == "__main__":
    main()
