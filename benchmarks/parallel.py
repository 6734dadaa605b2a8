"""Evaluation on Dask workers: speed-up, per-candidate cost per storage, asynchronous vs generational.

Everything is measured side by side in one run, with the runner's Python API (the driver is this
process; its time is ``Runner.run()``, Dask cluster start included, interpreter start excluded).

Part 1 -- speed-up: 48 candidates of 0.5 s CPU busy-work each (analytic objective, ``work: 0.5``),
PSO with population 8, SQLite; inline, then ``runner.workers`` = 1, 2 and 4 (1 and 2: the median
of 3 interleaved runs). This machine's cores bound the useful number of workers.

Part 2 -- cost per candidate: an objective that costs nothing, 2 workers, on SQLite, a journal
file, PostgreSQL and Redis (when reachable). The cost per candidate is the slope between a
100-trial and a 600-trial run (so the cluster's start, paid once, is not spread over it); the
inline path is measured the same way for reference.

Part 3 -- asynchronous vs generational: candidate times drawn from a lognormal distribution
(median 0.5 s, sigma 1, clipped to 0.1-3 s; fixed by each candidate's parameters), 4 workers,
96 trials, population 8. Random search draws the same 96 candidates in both modes (same work);
GA draws different ones, so its total work is printed beside the wall time.

Part 4 (``--main-job``, about 8 minutes on 2 cores): the main job (``studies/dknn_pso.yaml``,
30 DKNN candidates) inline, on 2 workers, and on 2 workers in asynchronous mode.

Run: python benchmarks/parallel.py [--main-job]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

import optuna

from optileuk.config import load_study
from optileuk.runner import Runner

PG = os.environ.get("OPTILEUK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")
REDIS = os.environ.get("OPTILEUK_TEST_REDIS", "redis://127.0.0.1:6379/12")
SPACE = "{parameters: {x0: {type: float, low: -5, high: 5}, x1: {type: float, low: -5, high: 5}}}"


def study_file(folder: Path, name: str, *, objective: str, runner: str, trials: int, optimizer: str = "pso",
               pop: int = 8) -> Path:
    path = folder / f"{name}.yaml"
    path.write_text(f"""
name: {name}
seed: 0
objective: {{type: analytic, function: sphere, {objective}}}
search_space: {SPACE}
optimizer: {{name: {optimizer}, population: {pop}}}
budget: {{trials: {trials}}}
runner: {{{runner}}}
""")
    return path


def timed(path: Path, storage: str) -> tuple[float, object]:
    runner = Runner(load_study(path, storage=storage)).prepare()
    t0 = time.perf_counter()
    summary = runner.run()
    return time.perf_counter() - t0, summary


def part1(tmp: Path, repeats: int = 3) -> None:
    print("## 1. Speed-up: 48 candidates x 0.5 s CPU work, PSO (population 8), SQLite\n")
    print(f"({os.cpu_count()} CPU cores; 1 and 2 workers: median of {repeats} interleaved runs)\n")
    print("| evaluation | seconds | runs | speed-up vs 1 worker |")
    print("|---|---|---|---|")
    rows = {"inline (driver process)": ("max_consecutive_failures: 10", 1), "1 Dask worker": ("workers: 1", repeats),
            "2 Dask workers": ("workers: 2", repeats), "4 Dask workers": ("workers: 4", 1)}
    runs: dict[str, list[float]] = {label: [] for label in rows}
    for r in range(repeats):
        for label, (runner, n) in rows.items():
            if r < n:
                name = f"speed{len(runs[label])}-{label.split()[0]}"
                path = study_file(tmp, name, objective="work: 0.5", runner=runner, trials=48)
                runs[label].append(timed(path, f"sqlite:///{tmp}/{name}.db")[0])
    base = statistics.median(runs["1 Dask worker"])
    for label, secs in runs.items():
        sec = statistics.median(secs)
        shown = "-" if label.startswith("inline") else f"{base / sec:.2f}"
        print(f"| {label} | {sec:.1f} | {', '.join(f'{x:.1f}' for x in secs)} | {shown} |")


def storages(tmp: Path) -> list[tuple[str, str]]:
    out = [("SQLite", f"sqlite:///{tmp}/cost.db"), ("journal file", f"journal://{tmp}/cost.log")]
    try:
        import psycopg

        with psycopg.connect(PG, autocommit=True, connect_timeout=3) as c:
            c.execute("DROP DATABASE IF EXISTS optileuk_bench WITH (FORCE)")
            c.execute("CREATE DATABASE optileuk_bench")
        out.append(("PostgreSQL", PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/optileuk_bench"))
    except Exception as exc:  # noqa: BLE001 - report and go on without it
        print(f"(PostgreSQL not measured: {exc})\n")
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=3).flushdb()
        out.append(("Redis (journal)", REDIS))
    except Exception as exc:  # noqa: BLE001
        print(f"(Redis not measured: {exc})\n")
    return out


def part2(tmp: Path) -> None:
    print("\n## 2. Cost per candidate: free objective, slope between 100 and 600 trials\n")
    print("| storage | evaluation | 100 trials (s) | 600 trials (s) | ms per candidate |")
    print("|---|---|---|---|---|")
    for label, url in storages(tmp):
        for how, runner in (("2 Dask workers", "workers: 2"), ("inline", "max_consecutive_failures: 10")):
            secs = []
            for n in (100, 600):
                name = f"cost-{abs(hash((label, how, n))) % 10**6}"
                secs.append(timed(study_file(tmp, name, objective="sleep: 0", runner=runner, trials=n), url)[0])
            print(f"| {label} | {how} | {secs[0]:.2f} | {secs[1]:.2f} | {(secs[1] - secs[0]) / 500 * 1e3:.1f} |")


def part3(tmp: Path) -> None:
    print("\n## 3. Asynchronous vs generational: lognormal candidate times (median 0.5 s, 0.1-3 s), 4 workers, "
          "96 trials\n")
    print("| optimizer | mode | seconds | candidate seconds (sum) | workers busy | async speed-up |")
    print("|---|---|---|---|---|---|")
    objective = "sleep: 0.5, sleep_sigma: 1.0, sleep_range: [0.1, 3.0]"
    for optimizer in ("random", "ga"):
        wall = {}
        for mode in ("generational", "async"):
            name = f"mode-{optimizer}-{mode}"
            url = f"sqlite:///{tmp}/{name}.db"
            sec, _ = timed(study_file(tmp, name, objective=objective, runner=f"workers: 4, mode: {mode}", trials=96,
                                      optimizer=optimizer), url)
            work = sum(t.user_attrs["sleep_seconds"] for t in optuna.load_study(study_name=name, storage=url).trials)
            wall[mode] = sec
            ratio = f"{wall['generational'] / sec:.2f}" if mode == "async" else "-"
            print(f"| {optimizer} | {mode} | {sec:.1f} | {work:.1f} | {work / (4 * sec):.0%} | {ratio} |")


def part4(tmp: Path) -> None:
    import yaml

    root = Path(__file__).resolve().parents[1]
    print("\n## 4. The main job (studies/dknn_pso.yaml: 30 DKNN candidates, PSO population 6), SQLite\n")
    print("| evaluation | seconds | candidate seconds (sum) | epochs trained | s per epoch | best value |")
    print("|---|---|---|---|---|---|")
    data = yaml.safe_load((root / "studies" / "dknn_pso.yaml").read_text())
    data["search_space"] = str(root / "search_spaces" / "dknn.yaml")
    for label, runner in (("inline", {}), ("2 Dask workers", {"workers": 2}),
                          ("2 Dask workers, async", {"workers": 2, "mode": "async"})):
        name = f"main-{len(runner)}-{runner.get('mode', 'g')}"
        path = tmp / f"{name}.yaml"
        path.write_text(yaml.safe_dump({**data, "name": name, "runner": runner}))
        url = f"sqlite:///{tmp}/main.db"
        sec, summary = timed(path, url)
        trials = optuna.load_study(study_name=name, storage=url).trials
        work = sum(t.user_attrs["seconds"] for t in trials)
        epochs = sum(t.user_attrs["epochs_trained"] for t in trials)
        print(f"| {label} | {sec:.1f} | {work:.1f} | {epochs} | {work / epochs:.2f} | {summary.best_value:.4f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--main-job", action="store_true", help="also time the main job (about 8 minutes)")
    args = ap.parse_args()
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        part1(tmp)
        part2(tmp)
        part3(tmp)
        if args.main_job:
            part4(tmp)


if __name__ == "__main__":
    main()
