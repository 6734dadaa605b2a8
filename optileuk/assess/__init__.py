"""``optileuk assess``: honest numbers -- nested cross-validation across approaches, and a shortcut audit.

For each of K outer parts of the data (stratified; grouped by patient, slide or source image
where the layout tells it) and each approach, the approach's search runs on the other parts only
(its own resumable study), its best config is trained on them as ``optileuk train`` does, and the
part is scored once. The held-out predictions of the K parts are pooled: every item is scored
once, by a model that never saw it. Approaches share the parts, so their differences are paired.

Example:
    >>> studies = [Path("studies/real_pipeline_pso.yaml"), Path("studies/real_handcrafted_tpe.yaml")]
    >>> summary = assess(studies, k=5)  # doctest: +SKIP
    >>> summary["verdict"]  # doctest: +SKIP
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from optileuk.assess._audit import audit
from optileuk.assess._pool import compare, part_rows, pool, primary, stability, verdict
from optileuk.assess._run import run_dask, run_inline
from optileuk.errors import DataError
from optileuk.plain import jsonable
from optileuk.assess._plan import (PART_ATTR, RESULT_ATTR, SUMMARY_ATTR, Approach, Job, Plan, load_dataset_arg,
                                   plan_assessment)


def run_plan(plan: Plan, *, workers: int | None = None, scheduler: str | None = None,
             on_done: Callable[[Job, dict], None] | None = None, on_start: Callable[[Job], Any] | None = None,
             on_cluster: Callable[[str], None] | None = None) -> dict[tuple[str, int], dict]:
    """Every job of ``plan`` (concurrently on Dask when ``workers`` or ``scheduler``); results by (approach, part)."""
    results: dict[tuple[str, int], dict] = {}

    def done(job: Job, result: dict) -> None:
        if job.part >= 0 and not np.array_equal(np.asarray(result["index"], int), plan.parts[job.part]):
            raise DataError(f"{job.name}: its held-out part is not outer part {job.part} (the study's data or "
                            "seed changed since it was stored?); delete the study or use another --name")
        results[(job.approach.label, job.part)] = result
        if on_done:
            on_done(job, result)

    if workers or scheduler:
        run_dask(plan.jobs(), done, workers=workers, scheduler=scheduler, on_cluster=on_cluster)
    else:
        run_inline(plan.jobs(), done, on_start)
    return results


def summarise(plan: Plan, results: dict[tuple[str, int], dict], audit_result: dict | None) -> dict[str, Any]:
    """The assessment as plain data: pooled figures, parts, paired differences, optimism, audit."""
    from optileuk.storage import redact

    task, key = plan.task, primary(plan.task)
    classes = list(plan.ds.classes)
    pooled, approaches = {}, {}
    for a in plan.approaches:
        parts = [results[(a.label, i)] for i in range(plan.k)]
        pooled[a.label] = pool(parts, task, classes)
        rows = part_rows(parts, task)
        gaps = [r["optimism"] for r in rows if r["optimism"] is not None]
        rule = a.rule.label if a.rule is not None else (a.rules[0].label if a.rules else None)
        approaches[a.label] = {"tuned": a.tuned, "study": str(a.path), "note": a.note, "rule": rule if a.tuned else None,
                               "search": a.search or (a.label if a.tuned else None),
                               "pooled": pooled[a.label]["metrics"], "parts": rows,
                               "optimism": float(np.mean(gaps)) if gaps else None,
                               "stability": stability(parts) if a.tuned else None,
                               "seconds": sum(sum((r.get("seconds") or {}).values()) for r in parts)}
        ext = results.get((a.label, -1))
        if ext is not None:
            approaches[a.label]["external"] = {"data": ext["external"], "images": ext["images"],
                                               "params": ext["params"], "metrics": ext["heldout"]}
    pairs = compare(pooled, task, len(classes))
    names = [str(p) for p in (plan.ds.paths or [f"#{i}" for i in range(len(plan.ds))])]
    return {
        "assessment": plan.base, "storage": redact(plan.storage), "outer": plan.k, "seed": plan.seed, "task": task,
        "metric": key, "data": {"name": plan.ds.name, "images": len(plan.ds), "classes": plan.ds.counts(),
                                "grouped": plan.ds.groups is not None, "part_sizes": [len(p) for p in plan.parts],
                                "duplicates": plan.ds.duplicates},
        "audit": audit_result, "approaches": approaches,
        "ranking": sorted(pooled, key=lambda lab: -pooled[lab]["metrics"][key]), "paired": pairs,
        "verdict": verdict(pooled, pairs, task), "external": plan.external_spec,
        "predictions": {lab: _predictions(p, names, classes, task) for lab, p in pooled.items()},
    }


def _predictions(p: dict, names: list[str], classes: list[str], task: str) -> dict[str, Any]:
    out: dict[str, Any] = {"file": [names[i] for i in p["index"]]}
    if task == "classification":
        out.update(truth=[classes[i] for i in p["y_true"]], predicted=[classes[i] for i in p["y_pred"]],
                   scores=np.round(p["scores"], 6).tolist())
    else:
        out.update({m: np.round(v, 6).tolist() for m, v in p["per_image"].items()})
    return out


def store_summary(plan: Plan, summary: dict[str, Any]) -> None:
    """Keep the summary (without the per-item predictions) as the study ``<base>.assess``: the report's section."""
    import optuna

    from optileuk.storage import open_storage

    storage = open_storage(plan.storage)
    try:
        sid = storage.get_study_id_from_name(f"{plan.base}.assess")
    except KeyError:
        sid = optuna.create_study(study_name=f"{plan.base}.assess", storage=storage)._study_id
    storage.set_study_user_attr(sid, PART_ATTR, {"base": plan.base, "summary": True})
    storage.set_study_user_attr(sid, SUMMARY_ATTR, jsonable({k: v for k, v in summary.items() if k != "predictions"}))


def assess(paths: list[Path], *, k: int = 5, seed: int | None = None, storage: str | None = None,
           name: str | None = None, pick: str | None = None, references: Path | None = None, untuned: bool = False,
           external: str | None = None, workers: int | None = None, scheduler: str | None = None,
           output: Path | None = None, on_audit: Callable[[dict], None] | None = None, selection: list | None = None,
           **callbacks) -> dict[str, Any]:
    """Plan (everything checked first), audit, run every part of every approach, pool, write ``output``.
    ``selection``: rules (:class:`optileuk.selection.Rule`) compared as approaches on each study's search."""
    plan = plan_assessment(paths, k=k, seed=seed, storage=storage, name=name, pick=pick, references=references,
                           with_untuned=untuned, external=external, inline=bool(workers or scheduler),
                           selection=selection)
    start = time.perf_counter()
    audit_result = audit(plan.ds, plan.parts, seed=plan.seed)
    if on_audit:
        on_audit(audit_result)
    results = run_plan(plan, workers=workers, scheduler=scheduler, **callbacks)
    summary = summarise(plan, results, audit_result)
    summary["seconds"] = time.perf_counter() - start
    store_summary(plan, summary)
    if output is not None:
        Path(output).write_text(json.dumps(jsonable(summary), indent=1) + "\n")
    return summary


__all__ = ["Approach", "Job", "PART_ATTR", "Plan", "RESULT_ATTR", "SUMMARY_ATTR", "assess", "audit", "load_dataset_arg",
           "plan_assessment", "run_plan", "summarise"]
