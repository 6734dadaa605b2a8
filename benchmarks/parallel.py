"""Speed-up with 1, 2 and 4 local workers, and bookkeeping per trial on each storage.

Part 1: 48 evaluations of an analytic objective doing 0.5 s of CPU work each (PSO, population
8), SQLite, `runner.workers` = 1, 2, 4; wall time and speed-up against 1 worker. This machine
has 2 cores: more than 2 workers cannot go faster.
Part 2: 60 evaluations of an objective that costs nothing, 2 workers, on SQLite, a journal file
and PostgreSQL (when reachable): driver + worker bookkeeping per trial.

Run: python benchmarks/parallel.py
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PG = os.environ.get("OPTILEUK_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/postgres")


def study_file(folder: Path, name: str, workers: int, trials: int, work: float) -> Path:
    (folder / f"{name}.yaml").write_text(f"""
name: {name}
seed: 0
objective: {{type: analytic, function: sphere, work: {work}}}
search_space: {{parameters: {{x0: {{type: float, low: -5, high: 5}}, x1: {{type: float, low: -5, high: 5}}}}}}
optimizer: {{name: pso, population: 8}}
budget: {{trials: {trials}}}
runner: {{workers: {workers}}}
""")
    return folder / f"{name}.yaml"


def run(path: Path, storage: str) -> float:
    t0 = time.perf_counter()
    subprocess.run([sys.executable, "-m", "optileuk.cli", "run", str(path), "--storage", storage, "-q"],
                   check=True, cwd=path.parent, stdout=subprocess.DEVNULL)
    return time.perf_counter() - t0


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        print("| workers | seconds (48 x 0.5 s CPU) | speed-up vs 1 worker |")
        print("|---|---|---|")
        base = None
        for w in (1, 2, 4):
            sec = run(study_file(tmp, f"speed{w}", w, 48, 0.5), f"sqlite:///{tmp}/speed{w}.db")
            base = base or sec
            print(f"| {w} | {sec:.1f} | {base / sec:.2f} |")
        storages = [("SQLite", f"sqlite:///{tmp}/b.db"), ("journal file", f"journal://{tmp}/b.log")]
        try:
            import psycopg

            with psycopg.connect(PG, autocommit=True, connect_timeout=3) as c:
                c.execute("DROP DATABASE IF EXISTS optileuk_bench WITH (FORCE)")
                c.execute("CREATE DATABASE optileuk_bench")
            storages.append(("PostgreSQL", PG.rsplit("/", 1)[0].replace("postgresql://", "postgresql+psycopg://") + "/optileuk_bench"))
        except Exception as exc:  # noqa: BLE001 - report and go on without it
            print(f"\n(PostgreSQL not measured: {exc})")
        print("\n| storage | seconds for 60 trials, 2 workers, free objective | ms per trial |")
        print("|---|---|---|")
        for name, url in storages:
            sec = run(study_file(tmp, "book", 2, 60, 0.0), url)
            print(f"| {name} | {sec:.1f} | {sec / 60 * 1e3:.0f} |")


if __name__ == "__main__":
    main()
