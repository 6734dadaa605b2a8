"""``optileuk compare``: plan, check, run side by side, then a short ranking."""

from __future__ import annotations

import dataclasses
import os
import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from optileuk.compare import (RunResult, check_references, execute, plan_comparison, prepare, run_threads,
                              score_references)
from optileuk.errors import ConfigError, Problem
from optileuk.runner import RunFailed
from optileuk.storage import redact


def compare_studies(paths: list[Path], *, seeds: int | None, storage: str | None, name: str | None,
                    trials: int | None, jobs: int | None, quiet: bool, out: Console, err: Console,
                    rebuild_state: bool = False) -> None:
    plan = plan_comparison(paths, seeds=seeds, name=name, storage=storage, trials=trials)
    if rebuild_state:
        plan.runs = [dataclasses.replace(run, rebuild_state=True) for run in plan.runs]
    if plan.first().file.runner.distributed:  # each run uses every worker of its Dask cluster
        if jobs is not None and jobs > 1:
            raise ConfigError([Problem("", "--jobs", "must be 1 when the runs evaluate on Dask workers "
                                       "(runner.workers, devices or scheduler): each run uses all of them", jobs)])
        jobs = 1
    jobs = min(jobs or os.cpu_count() or 1, len(plan.runs))
    if plan.storage == "memory":
        raise ConfigError([Problem("", "--storage", "must outlive the command (sqlite, postgresql, journal, redis): "
                                   "the runs are read back for the ranking and the report", plan.storage)])
    check_references(plan)  # a reference stored with other settings: refused before anything is written
    prepare(plan)  # data, devices, storage and run names are checked before any trial
    budget = plan.first().file.budget.trials
    total = budget * len(plan.runs) if budget else None
    t0 = time.perf_counter()
    for ref in plan.references:  # scored once before the runs: a baseline to beat
        err.print(f"scoring reference {ref.label} ({', '.join(f'{k} {v}' for k, v in ref.params.items()) or 'defaults'})...")
        res = score_references(dataclasses.replace(plan, references=[ref]), threads=run_threads(jobs))[0]
        if res.error:
            err.print(f"[red]reference {ref.label} failed:[/red] {res.error} (it is scored again on the next run)")
        else:
            err.print(f"reference {ref.label}: value {res.value:.6g}" + (" (stored before)" if res.stored_before
                                                                          else f" ({res.seconds:.1f} s)"))
    err.print(f"comparing {', '.join(plan.labels)} over seeds {', '.join(map(str, plan.seeds))}: "
              f"{len(plan.runs)} runs, {jobs} at a time, in {redact(plan.storage)}")
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("trials"),
               TextColumn("runs {task.fields[runs]}"), TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    failed: list[RunResult] = []
    with Progress(*columns, console=err, disable=quiet) as bar:
        task = bar.add_task(plan.base, total=total, runs=f"0/{len(plan.runs)}")
        finished = 0

        def on_done(res: RunResult) -> None:
            nonlocal finished
            finished += 1
            bar.update(task, runs=f"{finished}/{len(plan.runs)}")
            if res.error:
                failed.append(res)
                bar.console.print(f"[red]run {res.name} stopped:[/red] {res.error}")

        execute(plan, jobs=jobs, on_poll=lambda n: bar.update(task, completed=n), on_done=on_done)
    if len(failed) < len(plan.runs):
        out.print(ranking_table(plan.storage, plan.base))
    err.print(f"done in {time.perf_counter() - t0:.0f} s. Report: optileuk report --storage {redact(plan.storage)} "
              f"--prefix {plan.base} -o report.html")
    if failed:
        raise RunFailed(f"{len(failed)} of {len(plan.runs)} runs stopped early: {', '.join(r.name for r in failed)} "
                        "(their finished trials are stored; run the same command again to resume)")


def ranking_table(url: str, base: str) -> Table:
    from optileuk.report import collect, rank
    from optileuk.storage import open_storage

    group = next(g for g in collect(open_storage(url), url, base + ".") if g.base == base)
    r = rank(group)
    from optileuk.export import value_meaning
    from optileuk.storage import STUDY_ATTR

    meaning = "" if group.multi else value_meaning(group.runs[0].user_attrs.get(STUDY_ATTR))[0]
    what = "final hypervolume" if group.multi else "final best" + (f" ({meaning})" if meaning else "")
    table = Table(title=f"{base}: {what} over seeds {', '.join(map(str, group.seeds))} "
                        f"({'lower' if group.minimize else 'higher'} is better)", title_justify="left")
    for col in ("optimizer", "runs", "median", "best", "mean rank", "s/run"):
        table.add_column(col, justify="left" if col == "optimizer" else "right")
    for row in sorted(r.rows, key=lambda x: x.mean_rank if x.mean_rank is not None else 0):
        table.add_row(row.label, str(row.runs), f"{row.median:.4g}", f"{row.best:.4g}",
                      "-" if row.mean_rank is None else f"{row.mean_rank:.2f}", f"{row.seconds:.1f}")
    if r.friedman:
        table.caption = f"Friedman test: p = {r.friedman[1]:.3g} (details and pairwise tests in the report)"
    elif r.friedman_note:
        table.caption = f"Friedman test: {r.friedman_note}"
    for ref in group.references:
        table.caption = (table.caption + "\n" if table.caption else "") + ref.line(group)
    return table
