"""``optileuk assess`` and ``optileuk data audit``: what they print."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table
from optileuk.errors import ConfigError, Problem
from optileuk.plain import jsonable


def _ci(ci) -> str:
    return f" [{ci[0]:.3f}, {ci[1]:.3f}]" if isinstance(ci, (list, tuple)) and len(ci) == 2 else ""


def audit_table(a: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left", show_header=True)
    for col in ("what a model sees", "balanced accuracy [95% CI]", "verdict"):
        table.add_column(col)
    chance = a.get("chance")
    for name, r in a["shortcuts"].items():
        verdict = ("[red]SHORTCUT[/red]" if r["flag"] else "near chance" if r["ci95"][0] <= chance + 0.05
                   else "below the alarm")
        table.add_row(r["sees"], f"{r['balanced_accuracy']:.3f}{_ci(r['ci95'])}", verdict)
    dup = a["duplicates"]
    sizes = "; ".join(f"{c}: {s['height'][1]}x{s['width'][1]} ({s['height'][0]}-{s['height'][2]} high)"
                      for c, s in a["sizes"].items())
    lines = [f"chance {chance:.3f}; a warning when an interval's lower bound is above chance + 0.2" if chance else
             "one class: no shortcut classifier to fit",
             f"classes: {', '.join(f'{c} {n}' for c, n in a['classes'].items())}",
             f"median image size per class (height x width): {sizes}",
             f"duplicates across parts: {dup['exact_pairs_across_parts']} identical, "
             f"{dup['near_pairs_across_parts']} near ({dup['near']})"]
    merged = a.get("merged") or {}
    if merged.get("merged_images"):
        lines.append(f"merged into shared groups when loaded (so no part holds one copy and another part the other): "
                     f"{merged['merged_images']} images ({merged['exact_sets']} set(s) of identical images, "
                     f"{merged['near_pairs']} near-identical pair(s))")
    table.caption = "\n".join(lines)
    table.caption_justify = "left"
    return table


def print_audit(a: dict[str, Any], out: Console, err: Console, title: str) -> None:
    out.print(audit_table(a, title))
    for w in a["warnings"]:
        err.print(f"[yellow]warning:[/yellow] {w}")


def pooled_table(s: dict[str, Any]) -> Table:
    key = s["metric"]
    cols = ("balanced_accuracy", "accuracy", "macro_f1") if s["task"] == "classification" else ("dice", "iou", "ssim")
    table = Table(title=f"{s['assessment']}: pooled held-out figures over {s['outer']} outer parts "
                        f"({s['data']['images']} items, each scored once by a model that never saw it)",
                  title_justify="left")
    table.add_column("approach", overflow="fold")
    for c in cols:
        table.add_column(f"{c.replace('_', ' ')} [95% CI]")
    table.add_column("optimism")
    table.add_column("s")
    for label in s["ranking"]:
        a = s["approaches"][label]
        m = a["pooled"]
        name = label + ("" if a["tuned"] else " (reference)")
        opt = "-" if a["optimism"] is None else f"{a['optimism']:+.3f}"
        table.add_row(name, *(f"{m[c]:.3f}{_ci(m.get(f'{c}_ci95'))}" for c in cols), opt, f"{a['seconds']:.0f}")
    table.caption = (f"optimism: the search's own best {key.replace('_', ' ')} (its validation) minus the held-out "
                     "one, mean over the parts (above 0: the search's figure was optimistic)")
    table.caption_justify = "left"
    return table


def parts_table(s: dict[str, Any]) -> Table:
    key = s["metric"].replace("_", " ")
    table = Table(title=f"per outer part: held-out {key} (the search's own figure)", title_justify="left")
    table.add_column("part")
    table.add_column("items")
    labels = s["ranking"]
    for label in labels:
        table.add_column(label, overflow="fold")
    for i in range(s["outer"]):
        rows = [s["approaches"][lab]["parts"][i] for lab in labels]
        cells = [f"{r['heldout']:.3f}" + ("" if r["inner"] is None else f" ({r['inner']:.3f})") for r in rows]
        table.add_row(str(i), str(rows[0]["items"]), *cells)
    return table


def paired_lines(s: dict[str, Any]) -> list[str]:
    key = s["metric"].replace("_", " ")
    out = [f"{p['a']} minus {p['b']}: {p['difference']:+.3f} {key} [{p['ci95'][0]:+.3f}, {p['ci95'][1]:+.3f}]"
           + ("" if p["resolved"] else " (includes 0)") for p in s["paired"]]
    return out


def stability_lines(s: dict[str, Any]) -> list[str]:
    out = []
    for label, a in s["approaches"].items():
        if not a["stability"]:
            continue
        parts = []
        for name, st in a["stability"].items():
            if "chosen" in st:
                parts.append(f"{name} " + "/".join(f"{v} x{n}" for v, n in st["chosen"].items()))
            else:
                parts.append(f"{name} {st['min']:.3g}..{st['max']:.3g}")
        out.append(f"{label}: " + "; ".join(parts))
    return out


def print_summary(s: dict[str, Any], out: Console, output: Path | None) -> None:
    out.print(pooled_table(s))
    out.print(parts_table(s))
    if s["paired"]:
        out.print("[bold]paired differences[/bold] (same items, bootstrap 95% intervals):")
        for line in paired_lines(s):
            out.print(f"  {line}")
    out.print(f"[bold]which approach for these data:[/bold] {s['verdict']}")
    lines = stability_lines(s)
    if lines:
        out.print("[bold]configs chosen per part[/bold] (is the choice stable?):")
        for line in lines:
            out.print(f"  {line}")
    for label, a in s["approaches"].items():
        ext = a.get("external")
        if ext:
            m = ext["metrics"]
            fig = (f"balanced accuracy {m['balanced_accuracy']:.3f}{_ci(m.get('balanced_accuracy_ci95'))}"
                   if s["task"] == "classification" else f"Dice {m['dice']:.3f}{_ci(m.get('dice_ci95'))}")
            out.print(f"external {ext['data']} ({ext['images']} items): {label} trained on all the data: {fig}")
    dup = s["data"].get("duplicates") or {}
    if dup.get("merged_images"):
        out.print(f"duplicates: {dup['merged_images']} images merged into shared groups before any split "
                  f"({dup['exact_sets']} set(s) of identical images, {dup['near_pairs']} near-identical pair(s))")
    flagged = [w for w in (s.get("audit") or {}).get("warnings", [])]
    if flagged:
        out.print(f"[yellow]audit:[/yellow] {flagged[0]}")
    where = f"; written to {output}" if output else ""
    out.print(f"stored in {s['storage']} (study '{s['assessment']}.assess'; optileuk report shows it){where}")


def parse_selection(text: str | None) -> list | None:
    """``--selection best,one_se,ensemble:5`` as rules; a bad one is refused with the valid names."""
    if text is None:
        return None
    from optileuk.selection import parse_rules

    try:
        return parse_rules([t.strip() for t in text.split(",") if t.strip()])
    except ValueError as exc:
        raise ConfigError([Problem("", "--selection", str(exc))]) from None


def assess_cli(studies: list[Path], *, k: int, storage, seed, name, pick, references, untuned, external, workers,
               scheduler, output: Path, quiet: bool, out: Console, err: Console, selection: str | None = None) -> None:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from optileuk.assess import assess
    if workers and scheduler:
        raise ConfigError([Problem("", "--workers", "starts a local cluster; --scheduler names another one (give one "
                                   "of them)", workers)])
    rules = parse_selection(selection)
    bar = Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                   console=err, disable=quiet)
    state: dict[str, Any] = {}

    def on_audit(a: dict) -> None:
        print_audit(a, out, err, "shortcut audit: models that cannot see the cell, on the same outer parts")
        state["parts"] = bar.add_task("parts", total=None)
        bar.start()
        state["started"] = True

    def on_start(job):
        bar.update(state["parts"], description=f"{job.name}: searching" if job.approach.tuned else
                   f"{job.name}: training")
        if "trials" not in state:
            state["trials"] = bar.add_task("trials", total=None)

        def progress(p) -> None:
            bar.update(state["trials"], completed=p.done, description=f"  trials of {job.name}")
        return progress

    def on_done(job, result) -> None:
        done = state.setdefault("done", 0) + 1
        state["done"] = done
        bar.update(state["parts"], completed=done)
        held = result["heldout"].get("balanced_accuracy", result["heldout"].get("dice"))
        where = f"part {job.part}" if job.part >= 0 else "all the data"
        how = " (stored before)" if result.get("reused") else " (the same model as another rule's)" if \
            result.get("shared") else ""
        bar.console.print(f"{job.approach.label}, {where}: held out {held:.3f}{how}")

    try:
        summary = assess(studies, k=k, seed=seed, storage=storage, name=name, pick=pick, references=references,
                         untuned=untuned, external=external, workers=workers, scheduler=scheduler, output=output,
                         on_audit=on_audit, on_done=on_done, on_start=None if (workers or scheduler) else on_start,
                         on_cluster=lambda where: bar.console.print(f"parts run side by side on {where}"),
                         selection=rules)
    finally:
        if state.get("started"):
            bar.stop()
    print_summary(summary, out, output)


def audit_cli(dataset: str, *, k: int, seed: int, group_pattern, output, out: Console, err: Console) -> None:
    import json

    from optileuk.assess import audit
    from optileuk.assess import load_dataset_arg
    from optileuk.data import outer_parts

    import warnings

    from optileuk.data import drop_small_classes

    ds, classify = load_dataset_arg(dataset, group_pattern)
    if classify:  # a class too small to be in every outer part cannot be audited: left out, said aloud
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            ds = drop_small_classes(ds, k)
        for w in caught:
            err.print(f"warning: {str(w.message).replace('(dataset.min_per_class)', f'(--outer {k})')}")
    parts = outer_parts(ds, k, seed=seed, classify=classify)
    a = audit(ds, parts, seed=seed)
    print_audit(a, out, err, f"shortcut audit of {ds.name} ({len(ds)} images, {k} outer parts, seed {seed})")
    if output is not None:
        Path(output).write_text(json.dumps(jsonable(a), indent=1) + "\n")
        err.print(f"wrote {output}")
