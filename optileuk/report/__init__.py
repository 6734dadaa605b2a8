"""``optileuk report``: compared runs read back from a storage, as one self-contained HTML file."""

from __future__ import annotations

from optileuk.report._assess import assessments
from optileuk.report._collect import Group, RunData, collect
from optileuk.report._stats import Ranking, holm, rank


def write_report(url: str, output, *, prefix: str | None = None, target: float | None = None) -> list[Group]:
    """Write the report of every comparison in ``url`` (whose names start with ``prefix``) to ``output``."""
    from pathlib import Path

    import optuna

    from optileuk.report._html import render
    from optileuk.storage import open_existing

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = open_existing(url)
    found = assessments(storage, prefix)
    groups = collect(storage, url, prefix, allow_empty=bool(found))
    Path(output).write_text(render(storage, url, groups, target, found), encoding="utf-8")
    return groups


__all__ = ["Group", "assessments", "Ranking", "RunData", "collect", "holm", "rank", "write_report"]
