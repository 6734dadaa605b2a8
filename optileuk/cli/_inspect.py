"""``optileuk list`` and ``optileuk export``: reading studies back from a storage."""

from __future__ import annotations

import json
from typing import Any

import optuna
import yaml
from rich.table import Table

from optileuk.errors import StorageError
from optileuk.export import export_config, value_meaning
from optileuk.storage import STUDY_ATTR, open_existing, redact


def list_table(url: str) -> Table:
    """Every study of the storage from per-study counts (no trial is read)."""
    from optileuk.storage import study_counts

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing(url)
    table = Table(title=f"studies in {redact(url)}")
    for col in ("study", "optimizer", "direction", "complete", "failed", "best value", "value is"):
        table.add_column(col)
    counts = study_counts(storage)
    for fs in storage.get_all_studies():
        c = counts.get(fs._study_id)
        best = "-"
        if c is not None and len(fs.directions) == 1:
            v = c.low if fs.directions[0] == optuna.study.StudyDirection.MINIMIZE else c.high
            best = "-" if v is None else f"{v:.6g}"
        complete = 0 if c is None else c.n(optuna.trial.TrialState.COMPLETE)
        failed = 0 if c is None else c.n(optuna.trial.TrialState.FAIL)
        meaning = value_meaning(fs.user_attrs.get(STUDY_ATTR))[0] if len(fs.directions) == 1 else \
            ", ".join((fs.user_attrs.get(STUDY_ATTR) or {}).get("objectives") or [])
        table.add_row(fs.study_name, str(fs.user_attrs.get("optimizer", "-")),
                      ",".join(d.name.lower() for d in fs.directions), str(complete), str(failed), best, meaning or "-")
    return table


def export_text(name: str, url: str, fmt: str, top: int, pick: str | None = None, selection: str | None = None) -> str:
    if fmt not in ("yaml", "json"):
        raise StorageError(f"--format must be yaml or json, got {fmt!r}")
    data = export_config(name, url, top, pick, selection)
    if fmt == "json":
        return json.dumps(data, indent=2) + "\n"
    return yaml.safe_dump(data, sort_keys=False)


def metrics_table(metrics: dict[str, Any], run_dir) -> Table:
    """The test-split metrics of ``optileuk train``, for the terminal."""
    table = Table(title=f"{metrics['task']}: scored once on the test split", caption=metrics["split"],
                  show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column()
    keys = ("accuracy", "balanced_accuracy", "macro_f1", "auc") if metrics["task"] == "classification" \
        else ("dice", "iou", "ssim", "mean")
    for k in keys:
        v, ci = metrics.get(k), metrics.get(f"{k}_ci95")
        text = "-" if v is None else f"{v:.4f}" + (f"  (95% CI {ci[0]:.3f} to {ci[1]:.3f}, bootstrap)" if ci else "")
        table.add_row(k.replace("_", " "), text)
    if "confusion_matrix" in metrics:
        cm = metrics["confusion_matrix"]
        table.add_row("confusion matrix", "\n".join(" ".join(f"{n:4d}" for n in row) for row in cm)
                      + f"\n(rows: true {', '.join(metrics['classes'])})")
    table.add_row("test images", str(metrics["n_test"]))
    from pathlib import Path

    table.add_row("written to", f"{run_dir}/ ({', '.join(sorted(p.name for p in Path(run_dir).iterdir()))})")
    return table
