"""`optileuk compare` on the shipped segmentation comparison, at a reduced size, three ways side by side.

    python benchmarks/compare.py [--seeds 2] [--trials 24]

1. one run at a time (--jobs 1);
2. two runs side by side, each process limited to its share of the cores (the default);
3. two runs side by side, every process using every core (OpenMP/BLAS oversubscribed).

Each mode starts from an empty storage; the data cache is warmed first so that no mode pays for
generating the images. Prints wall times and the ratios to mode 1.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seeds", type=int, default=2)
    ap.add_argument("--trials", type=int, default=24)
    args = ap.parse_args()
    os.environ.setdefault("OPTILEUK_CACHE", tempfile.mkdtemp(prefix="optileuk-bench-cache-"))
    import optuna

    from optileuk.compare import execute, plan_comparison, prepare

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    file = ROOT / "studies" / "compare_segmentation.yaml"
    warm = plan_comparison([file], seeds=1, trials=1, storage="memory")
    execute(warm, jobs=1)  # fills the data cache

    modes = [("one run at a time", 1, None), ("2 side by side, cores shared out", 2, None),
             ("2 side by side, no thread limit", 2, 0)]
    times = []
    for label, jobs, threads in modes:
        with tempfile.TemporaryDirectory() as tmp:
            plan = plan_comparison([file], seeds=args.seeds, trials=args.trials, storage=f"sqlite:///{tmp}/b.db")
            t0 = time.perf_counter()
            prepare(plan)  # as optileuk compare does: storage and studies made once, before the processes
            results = execute(plan, jobs=jobs, threads=threads)
            times.append(time.perf_counter() - t0)
            assert not any(r.error for r in results), [r.error for r in results if r.error]
        print(f"{label:36s} {len(plan.runs)} runs x {args.trials} trials: {times[-1]:7.1f} s  "
              f"(x{times[0] / times[-1]:.2f} vs one at a time)", flush=True)


if __name__ == "__main__":
    main()
