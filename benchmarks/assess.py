"""``optileuk assess`` with its outer parts side by side on Dask workers against one after another.

The same assessment twice from fresh storages, one after the other on this machine (whole
commands, process start included): ``--outer 5`` of a study whose candidates train networks
(``dknn`` on 600 embedded synthetic crops, TPE, 8 trials of 8 epochs per part) and of the fast shipped
real baseline (``studies/real_handcrafted_tpe.yaml``, 40 SVM candidates per part). Printed: wall
times, the speed-up, and the pooled balanced accuracy of each (the workers run torch with one
thread each, the single process with every core, so network results may differ in the last digits).

Run: python benchmarks/assess.py [--workers 2] [--outer 5] [--trials 6]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def dknn_study(folder: Path, trials: int) -> Path:
    data = {"name": "bench-dknn", "seed": 0,
            "objective": {"type": "dknn", "dataset": {"type": "synthetic", "n_per_class": 150},
                          "defaults": {"epochs": 8}},
            "search_space": {"parameters": {"rank1": {"type": "int", "low": 0, "high": 4},
                                            "lr": {"type": "float", "low": 1e-3, "high": 1e-2, "log": True}}},
            "optimizer": {"name": "tpe", "population": 1, "n_startup_trials": 2}, "budget": {"trials": trials}}
    path = folder / "bench_dknn.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def timed(args: list[str], cwd: Path) -> tuple[float, dict]:
    exe = str(Path(sys.executable).parent / "optileuk")
    start = time.perf_counter()
    r = subprocess.run([exe, "assess", *args, "-q", "-o", "a.json"], cwd=cwd, capture_output=True, text=True,
                       env={**os.environ, "COLUMNS": "200"})
    seconds = time.perf_counter() - start
    if r.returncode:
        raise SystemExit(r.stderr)
    return seconds, json.loads((cwd / "a.json").read_text())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--outer", type=int, default=5)
    ap.add_argument("--trials", type=int, default=8)
    ap.add_argument("--only", choices=["dknn", "handcrafted"], default=None)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="optileuk-assess-bench-"))
    os.environ.setdefault("OPTILEUK_CACHE", str(tmp / "cache"))
    studies = {"dknn": dknn_study(tmp, args.trials), "handcrafted": ROOT / "studies" / "real_handcrafted_tpe.yaml"}
    for label, path in studies.items():
        if args.only and label != args.only:
            continue
        rows = []
        for mode, extra in (("one after another", []), (f"{args.workers} Dask workers", ["--workers", str(args.workers)])):
            cwd = tmp / f"{label}-{len(extra)}"
            cwd.mkdir()
            seconds, summary = timed([str(path), "--outer", str(args.outer), *extra], cwd)
            pooled = next(iter(summary["approaches"].values()))["pooled"]["balanced_accuracy"]
            rows.append((mode, seconds, pooled))
        base = rows[0][1]
        print(f"\n{label} ({path.name}), --outer {args.outer}:")
        for mode, seconds, pooled in rows:
            print(f"  {mode}: {seconds:.1f} s ({base / seconds:.2f}x), pooled balanced accuracy {pooled:.4f}")


if __name__ == "__main__":
    main()
