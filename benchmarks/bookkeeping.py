"""Per-evaluation bookkeeping of `optileuk run` against driving the same optimizer directly.

The objective is 10-D Rastrigin made to cost ~1 ms (a busy-wait, so it is CPU time like a real
cheap objective). Three ways of spending the same 600 evaluations, measured side by side:

* direct   -- the optimizer adapter's step() with a plain evaluate() (no trials, no storage);
* memory   -- the optileuk runner with Optuna's in-memory storage;
* sqlite   -- the optileuk runner with the default SQLite storage (a fresh file);
* sqlite-optuna -- as sqlite, but every trial written through Optuna's public
  ``create_new_trial`` (its ORM, one transaction per trial): the runner without its batched writer.

Run: python benchmarks/bookkeeping.py [--optimizer pso] [--evals 600]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from optileuk.config import load_study
from optileuk.runner import Runner
from optileuk.storage import open_storage

ROOT = Path(__file__).resolve().parents[1]


def busy(seconds: float) -> None:
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass


def patched_objective(study, cost):
    obj = study.objective()
    inner = obj.evaluate

    def evaluate(config, *, trial=None):
        busy(cost)
        return inner(config, trial=trial)

    obj.evaluate = evaluate
    return obj


def run_direct(study, cost: float, evals: int) -> float:
    obj = patched_objective(study, cost)
    space = obj.bind(study.space)
    box = space.box
    opt = study.optimizer.build(box, study.optimizer_config, seed=study.file.seed, max_generations=evals // 20)
    n = [0]

    def evaluate(x):
        out = []
        for row in np.atleast_2d(x):
            if n[0] >= evals:
                raise StopIteration
            out.append(obj.evaluate(space.decode(box.clip(row))).value)
            n[0] += 1
        return np.array(out)

    t0 = time.perf_counter()
    try:
        while n[0] < evals:
            opt.step(evaluate)
    except StopIteration:
        pass
    return time.perf_counter() - t0


def run_runner(study, cost: float, storage_url: str, public_path: bool = False) -> float:
    from optileuk.storage import _write as _records

    obj = patched_objective(study, cost)
    study.objective = lambda: obj
    storage = open_storage(storage_url)
    saved = _records._bulk_capable
    if public_path:
        _records._bulk_capable = lambda storage: False
    try:
        t0 = time.perf_counter()
        Runner(study, storage=storage).run()
        return time.perf_counter() - t0
    finally:
        _records._bulk_capable = saved


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--optimizer", default="pso")
    ap.add_argument("--evals", type=int, default=600)
    ap.add_argument("--cost", type=float, default=0.001, help="seconds per objective call")
    args = ap.parse_args()
    path = ROOT / "studies" / f"rastrigin_{args.optimizer}.yaml"
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        direct = run_direct(load_study(path, trials=args.evals), args.cost, args.evals)
        rows.append(("direct", direct))
        rows.append(("memory", run_runner(load_study(path, trials=args.evals), args.cost, "memory")))
        rows.append(("sqlite", run_runner(load_study(path, trials=args.evals), args.cost, f"sqlite:///{tmp}/a.db")))
        rows.append(("sqlite-optuna", run_runner(load_study(path, trials=args.evals), args.cost,
                                                 f"sqlite:///{tmp}/b.db", public_path=True)))
    pure = args.evals * args.cost
    print(f"{args.optimizer}, {args.evals} evaluations of a {args.cost * 1e3:.1f} ms objective "
          f"(objective time alone {pure:.2f} s)")
    print(f"{'mode':14s} {'seconds':>8s} {'ratio/direct':>13s} {'bookkeeping ms/eval':>20s}")
    for name, sec in rows:
        print(f"{name:14s} {sec:8.2f} {sec / direct:13.2f} {(sec - pure) / args.evals * 1e3:20.2f}")


if __name__ == "__main__":
    main()
