"""Evaluation on Dask workers: speed-up, per-candidate cost per storage, asynchronous vs generational.

Everything is measured side by side in one run, with the runner's Python API (the driver is this
process; its time is ``Runner.run()``, Dask cluster start included, interpreter start excluded).

Part 1 -- speed-up: 48 candidates of 0.5 s CPU busy-work each (analytic objective, ``work: 0.5``),
PSO with population 8, SQLite; inline, then ``runner.workers`` = 1, 2 and 4. This machine's
cores bound the useful number of workers.

Part 2 -- cost per candidate: an objective that costs nothing, 2 workers, on SQLite, a journal
file, PostgreSQL and Redis (when reachable). The cost per candidate is the slope between a
100-trial and a 600-trial run (so the cluster's start, paid once, is not spread over it); the
inline path is measured the same way for reference.

Part 3 -- asynchronous vs generational: candidate times drawn from a lognormal distribution
(median 0.5 s, sigma 1, clipped to 0.1-3 s; fixed by each candidate's parameters), 4 workers,
96 trials, population 8. Random search draws the same 96 candidates in both modes (same work);
GA draws different ones, so its total work is printed beside the wall time.

Run: python benchmarks/parallel.py
"""

from __future__ import annotations

import os
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


def part1(tmp: Path) -> None:
    print("## 1. Speed-up: 48 candidates x 0.5 s CPU work, PSO (population 8), SQLite\n")
    print(f"({os.cpu_count()} CPU cores)\n")
    print("| evaluation | seconds | speed-up vs 1 worker |")
    print("|---|---|---|")
    rows = [("inline (driver process)", "max_consecutive_failures: 10")]
    rows += [(f"{w} Dask worker(s)", f"workers: {w}") for w in (1, 2, 4)]
    base = None
    for label, runner in rows:
        name = f"speed{abs(hash(label)) % 10**6}"
        sec, _ = timed(study_file(tmp, name, objective="work: 0.5", runner=runner, trials=48), f"sqlite:///{tmp}/{name}.db")
        if label.startswith("1 "):
            base = sec
        shown = "-" if base is None else f"{base / sec:.2f}"
        print(f"| {label} | {sec:.1f} | {shown} |")


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


def main() -> None:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        part1(tmp)
        part2(tmp)
        part3(tmp)


if __name__ == "__main__":
    main()
