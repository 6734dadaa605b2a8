"""A study that grows large: 100,000 GA evaluations on SQLite, then the commands that read it back.

Measured in one run, each command a fresh process as a user would start it (its time includes
Python's start and imports; its peak memory is the process's own):

* ``optileuk run`` of a 100,000-trial GA study (10-D Rastrigin, population 100; the objective is
  microseconds, so this is the runner's bookkeeping): evaluations/s over the whole run and in its
  slowest tenth (from the trials' own timestamps), and the driver's peak memory;
* the same ``optileuk run`` again on the finished study (resume: nothing to do);
* ``optileuk list``, ``optileuk export``, ``optileuk export --top 10``, ``optileuk report``;
* side by side, what reading the study through Optuna's public API costs (``get_all_trials``, what
  each of those commands did before they read only what they need), and ``study.best_trial``.

Run: python benchmarks/scale.py [--trials 100000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

# runs the CLI (or a snippet) and prints the process's peak RSS to stderr when it ends
_WRAP = textwrap.dedent("""
    import atexit, sys
    def peak():  # this process's own high-water mark (getrusage would include the parent's at fork)
        with open("/proc/self/status") as f:
            return next(line.split()[1] for line in f if line.startswith("VmHWM"))
    atexit.register(lambda: print("PEAK_KB", peak(), file=sys.stderr))
    if sys.argv[1] == "-c":
        exec(sys.argv[2])
    else:
        sys.argv = ["optileuk"] + sys.argv[1:]
        from optileuk.cli import main
        main()
""")


def timed(args: list[str]) -> tuple[float, float, str]:
    """(seconds, peak MB, stdout) of one fresh process."""
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _WRAP, *args], capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise SystemExit(f"{' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-2000:]}")
    peak = next(float(line.split()[1]) / 1024 for line in proc.stderr.splitlines() if line.startswith("PEAK_KB"))
    return seconds, peak, proc.stdout


def rates(url: str, name: str) -> tuple[int, float, float]:
    """(finished trials, evaluations/s over the run, evaluations/s of its slowest tenth) from the
    trials' start and completion times."""
    import numpy as np

    from optileuk.storage import finished_columns
    from optileuk.storage import open_storage

    storage = open_storage(url)
    sid = storage.get_study_id_from_name(name)
    c = finished_columns(storage, sid)
    done = np.array([t.timestamp() for t in c.complete])
    start = min(t.timestamp() for t in c.start)
    n = len(done)
    overall = n / (done.max() - start)
    edges = np.linspace(0, n, 11).astype(int)
    slowest = min((b - a) / max(done[b - 1] - (done[a - 1] if a else start), 1e-9) for a, b in zip(edges, edges[1:]))
    return n, overall, slowest


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=100_000)
    ap.add_argument("--keep", type=Path, help="folder for the study and its database (default: a temporary one)")
    a = ap.parse_args()
    folder = a.keep or Path(tempfile.mkdtemp(prefix="optileuk-scale-"))
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "scale.db"
    db.unlink(missing_ok=True)
    url = f"sqlite:///{db}"
    study = folder / "scale_ga.yaml"
    study.write_text(textwrap.dedent(f"""
        name: scale-ga
        seed: 1
        storage: {url}
        objective: {{type: analytic, function: rastrigin}}
        search_space: {ROOT / 'search_spaces' / 'box10.yaml'}
        optimizer: {{name: ga, population: 100}}
        budget: {{trials: {a.trials}}}
    """))
    rows = []
    s, mb, _ = timed(["run", str(study), "-q"])
    n, overall, slowest = rates(url, "scale-ga")
    print(f"optileuk run, {n:,} trials: {s:.1f} s; {overall:,.0f} evaluations/s over the run, "
          f"{slowest:,.0f}/s in its slowest tenth; driver peak {mb:.0f} MB")
    for label, args in (("run again (finished study)", ["run", str(study), "-q"]),
                        ("list", ["list", "--storage", url]),
                        ("export", ["export", "scale-ga", "--storage", url]),
                        ("export --top 10", ["export", "scale-ga", "--storage", url, "--top", "10"]),
                        ("report", ["report", "--storage", url, "-o", str(folder / "report.html")])):
        s, mb, _ = timed(args)
        rows.append((label, s, mb))
    public = ("import optuna; optuna.logging.set_verbosity(optuna.logging.WARNING); "
              f"st = optuna.load_study(study_name='scale-ga', storage={url!r}); "
              "import time; t0 = time.perf_counter(); {what}; print(time.perf_counter() - t0)")
    for label, what in (("Optuna public API: get_all_trials", "n = len(st.get_trials(deepcopy=False))"),
                        ("Optuna public API: best_trial", "b = st.best_trial")):
        s, mb, out = timed(["-c", public.format(what=what)])
        rows.append((f"{label} (of which the call: {float(out.strip()):.2f} s)", s, mb))
    width = max(len(r[0]) for r in rows)
    print(f"{'command (fresh process)':{width}}  seconds  peak MB")
    for label, s, mb in rows:
        print(f"{label:{width}}  {s:7.2f}  {mb:7.0f}")
    print(json.dumps({"trials": n, "evals_per_s": round(overall), "slowest_tenth_per_s": round(slowest),
                      **{label.split(" (")[0]: round(s, 2) for label, s, _ in rows}}))


if __name__ == "__main__":
    main()
