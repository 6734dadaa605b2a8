"""``optileuk run``: progress bar while the runner works, a summary when it ends."""

from __future__ import annotations

import time
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from optileuk.config import load_study
from optileuk.objectives import preparing
from optileuk.runner import Runner, Summary


def run_study(path: Path, *, storage: str | None, trials: int | None, seed: int | None, quiet: bool,
              out: Console, err: Console, scheduler: str | None = None, rebuild_state: bool = False) -> Summary:
    start = time.perf_counter()
    study = load_study(path, trials=trials, seed=seed, storage=storage, scheduler=scheduler)
    runner = Runner(study, rebuild_state=rebuild_state)
    with Progress(TextColumn("[bold]preparing {task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, disable=quiet or not err.is_terminal, transient=True) as bar:
        task = bar.add_task(f"{study.name}: data", total=None)

        def on_step(done: int, total: int, what: str) -> None:
            bar.update(task, description=f"{study.name}: {what}", completed=done, total=total)

        with preparing(on_step):
            runner.prepare()
    prepared = time.perf_counter() - start
    total = study.file.budget.trials
    columns = [TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("best {task.fields[best]}"), TextColumn("gen {task.fields[gen]}"),
               TimeElapsedColumn(), TextColumn("ETA"), TimeRemainingColumn()]
    bar = Progress(*columns, console=err, disable=quiet, transient=False)
    tasks: list = []

    def on_executor(where: str) -> None:  # only when there is something to run: then the bar
        if not quiet:
            err.print(f"evaluating on {where}")
        bar.start()
        tasks.append(bar.add_task(study.name, total=total, best="-", gen=0))

    def on_progress(p) -> None:
        if tasks:
            bar.update(tasks[0], completed=p.done, best="-" if p.best is None else f"{p.best:.6g}", gen=p.generation)

    runner.on_executor, runner.on_progress = on_executor, on_progress
    try:
        summary = runner.run()
        if tasks:  # the bar ends where the table says the run ended
            best = "-" if summary.best_value is None else f"{summary.best_value:.6g}"
            bar.update(tasks[0], completed=summary.trials, best=best if not summary.extra.get("front") else "front",
                       gen=summary.generation)
    finally:
        if tasks:
            bar.stop()
    summary.extra["prepare_seconds"] = prepared
    summary.extra["wall_seconds"] = time.perf_counter() - start
    if summary.extra.get("already_complete"):
        err.print(f"study '{study.name}' is already complete ({summary.trials} trials finished, budget "
                  f"{_budget_text(study.file.budget)}): nothing to run; raise the budget or pass --trials to go on")
    out.print(summary_table(summary, study.direction))
    return summary


def _budget_text(budget) -> str:
    parts = [f"{k} {v}" for k, v in (("trials", budget.trials), ("generations", budget.generations),
                                     ("timeout", budget.timeout)) if v is not None]
    return ", ".join(parts)


def split_text(sizes: dict) -> str:
    """``images: test 60 held out (30.0%), search 140 (train 98 / validation 42)`` (or k-fold CV, or
    segmentation's ``N scored, nothing trained``)."""
    total = sizes["test"] + sizes["search"]
    folds, repeats = sizes.get("folds", 1), sizes.get("repeats", 1)
    inner = (f"{sizes['scored']} scored, nothing trained" if folds == 0 else f"{folds}-fold cross-validation"
             if folds > 1 else f"train {sizes['train']} / validation {sizes['validation']}")
    if repeats > 1:
        inner += f", {repeats} repeats" if folds > 1 else f", {repeats} such splits"
    merged = sizes.get("duplicates_merged")
    dup = f"; {merged} duplicate images kept in shared groups" if merged else ""
    return (f"images: test {sizes['test']} held out ({100 * sizes['test'] / max(total, 1):.1f}%), "
            f"search {sizes['search']} ({inner}){dup}")


def trust_rows(extra: dict, chosen: dict) -> list[tuple[str, str]]:
    """The rows that say how far the chosen value can be trusted: its standard error, the rule's reason,
    the best against the defaults, and a warning when the search found nothing clearly better."""
    trust = extra.get("trust") or {}
    rows = []
    se = trust.get("value_se")
    if se is not None:
        rows.append(("  standard error", f"{se:.3g} of the best's mean over {trust.get('n_folds') or '?'} fold(s) "
                     "(corrected for overlapping training parts)" if (trust.get("n_folds") or 0) > 1 else
                     f"{se:.3g} of the best's value (bootstrap over its validation items)"))
    if chosen.get("rule", "best") != "best":
        rows.append(("  selection", f"{chosen['rule']}: {chosen.get('reason', '')}"))
    defaults = trust.get("defaults")
    if defaults:
        d = defaults.get("paired")
        text = f"trial {defaults['trial']}: {defaults['value']:.4g}"
        if d is not None:
            text += f"; best - defaults {d['difference']:+.4g} +- {d['se']:.3g} ({d['how']})"
        rows.append(("  the defaults", text))
    cells = (extra.get("split_sizes") or {}).get("search")
    for warning in trust.get("warnings", []):
        where = f"on {cells} cells " if cells else ""
        rows.append(("warning", f"{where}{warning}; prefer selection: anchored or one_se, or more data"))
    return rows


def summary_table(s: Summary, direction: str) -> Table:
    table = Table(title=f"study {s.study_name}", show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    front = s.extra.get("front")
    if front is not None:  # a multi-objective study: its Pareto front, not one best value
        names = s.extra["objectives"]
        table.add_row("Pareto front", f"{len(front)} trials ({', '.join(names)})")
        shown = sorted(front, key=lambda f: f["values"][0])
        step = max(1, len(shown) // 6)
        for f in shown[::step][:6]:
            table.add_row(f"  trial {f['trial']}", ", ".join(f"{n} {v:.4g}" for n, v in zip(names, f["values"])))
        table.add_row("", f"pick one for training: optileuk export {s.study_name} --pick knee")
    else:
        best = "-" if s.best_value is None else f"{s.best_value:.6g} ({direction})"
        meaning = s.extra.get("value_is")
        chosen = s.extra.get("selection") or {}
        label = "best value" if chosen.get("rule", "best") == "best" else f"chosen ({chosen['rule']})"
        table.add_row(label, best + (f" = {meaning}" if meaning and s.best_value is not None else ""))
        for name, text in trust_rows(s.extra, chosen):
            table.add_row(name, text)
        metrics = s.extra.get("metrics")
        if metrics:
            table.add_row("  metrics", ", ".join(f"{k.replace('_', ' ').replace('macro f1', 'macro-F1')} {v:.4g}"
                                                 for k, v in metrics.items()))
        if s.extra.get("value_split"):
            table.add_row("  scored on", str(s.extra["value_split"]))
        if s.best_params:
            table.add_row("parameters", "(the best trial's; inactive ones left out)" if s.extra.get("conditional") else "")
        for k, v in s.best_params.items():
            table.add_row(f"  {k}", f"{v:.6g}" if isinstance(v, float) else str(v))
    sizes = s.extra.get("split_sizes")
    if sizes:
        table.add_row("split", split_text(sizes))
    dup = f"{s.duplicates} duplicates (took an equal trial's value), " if s.duplicates else ""
    table.add_row("trials", f"{s.trials} finished (this run: {s.evaluated} evaluated, {s.reused} reused, "
                            f"{dup}{s.failed} failed, {s.pruned} pruned)")
    table.add_row("generations", str(s.generation))
    table.add_row("stopped by", s.stopped_by)
    wall = s.extra.get("wall_seconds")
    table.add_row("time", f"{s.seconds:.1f} s" if wall is None else
                  f"{wall:.1f} s (preparing {s.extra['prepare_seconds']:.1f} s, searching {s.seconds:.1f} s)")
    table.add_row("evaluated on", s.executor)
    table.add_row("stored in", f"{s.storage} (study '{s.study_name}')")
    return table
