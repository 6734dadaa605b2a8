"""``optileuk run`` with 2 local Dask workers against 1, as whole processes (interpreter start,
imports, cluster start and stop included): 48 candidates of 0.5 s of CPU time each (the analytic
objective's ``work``), PSO with population 8, SQLite, each run from a fresh storage. The two modes
are interleaved ``--repeats`` times; the medians and their ratio are printed, and where the
2-worker process spends its time outside the candidates.

Run: python benchmarks/workers_cli.py [--repeats 3] [--trials 48] [--work 0.5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

STUDY = """name: bench
seed: 0
objective: {{type: analytic, function: sphere, work: {work}}}
search_space: {{parameters: {{x0: {{type: float, low: -5, high: 5}}, x1: {{type: float, low: -5, high: 5}}}}}}
optimizer: {{name: pso, population: 8}}
budget: {{trials: {trials}}}
runner: {{workers: {workers}}}
"""


def once(folder: Path, workers: int, trials: int, work: float) -> float:
    run = folder / f"w{workers}-{time.monotonic_ns()}"
    run.mkdir()
    (run / "study.yaml").write_text(STUDY.format(work=work, trials=trials, workers=workers))
    exe = str(Path(sys.executable).parent / "optileuk")
    start = time.perf_counter()
    r = subprocess.run([exe, "run", "study.yaml", "-q"], cwd=run, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(r.stdout + r.stderr)
    return seconds


def startup(folder: Path) -> float:
    """The interpreter and optileuk's CLI imports alone (``optileuk --help``)."""
    exe = str(Path(sys.executable).parent / "optileuk")
    start = time.perf_counter()
    subprocess.run([exe, "--help"], cwd=folder, capture_output=True, check=True)
    return time.perf_counter() - start


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--trials", type=int, default=48)
    ap.add_argument("--work", type=float, default=0.5)
    args = ap.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="optileuk-workers-bench-"))
    times: dict[int, list[float]] = {1: [], 2: []}
    for _ in range(args.repeats):
        for workers in (1, 2):
            times[workers].append(once(folder, workers, args.trials, args.work))
    one, two = statistics.median(times[1]), statistics.median(times[2])
    ideal = args.trials * args.work
    print(f"{os.cpu_count()} CPU cores; {args.trials} candidates x {args.work} s CPU; whole `optileuk run` processes, "
          f"median of {args.repeats} interleaved")
    print(f"  1 worker : {one:6.2f} s  ({', '.join(f'{t:.2f}' for t in times[1])})")
    print(f"  2 workers: {two:6.2f} s  ({', '.join(f'{t:.2f}' for t in times[2])})")
    print(f"  speed-up : {one / two:.2f}x   (work alone: {ideal:.1f} s on 1 worker, {ideal / 2:.1f} s on 2)")
    print(f"  `optileuk --help` (interpreter + CLI imports): {startup(folder):.2f} s")


if __name__ == "__main__":
    main()
