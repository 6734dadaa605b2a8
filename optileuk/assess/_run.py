"""Running the jobs of an assessment: each approach's search on the other parts, its best config
trained on them, the part scored once; in this process one after another, or concurrently on Dask
workers. A part's result is stored with its inner study, so a re-run trains nothing twice and
evaluates no candidate twice (the inner studies resume like ``optileuk run``)."""

from __future__ import annotations

import hashlib
import json
import time
from typing import Any, Callable, Sequence

import numpy as np

from optileuk.assess._plan import PART_ATTR, RESULT_ATTR, Job
from optileuk.plain import jsonable

CLASS_METRICS = ("balanced_accuracy", "accuracy", "macro_f1", "auc")
SEG_METRICS = ("dice", "iou", "ssim", "mean")


def params_key(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, default=str).encode()).hexdigest()[:20]


def _holder(storage, name: str, direction: str) -> int:
    """The id of the study a result is kept with (a reference's is made here: it has no search)."""
    import optuna

    try:
        return storage.get_study_id_from_name(name)
    except KeyError:
        return optuna.create_study(study_name=name, storage=storage, direction=direction)._study_id


def result_key(job: Job) -> str:
    """The user attr a part's result is kept under: one per selection rule on a shared search."""
    rule = job.approach.rule
    return RESULT_ATTR if rule is None else f"{RESULT_ATTR}[{rule.label}]"


def _stored(storage, name: str) -> dict[str, dict[str, Any]]:
    """Every result kept with the study ``name`` (one per selection rule), by attr key."""
    try:
        study_id = storage.get_study_id_from_name(name)
    except KeyError:
        return {}
    return {k: v for k, v in storage.get_study_user_attrs(study_id).items() if k.startswith(RESULT_ATTR)}


def _search(job: Job, study, objective, on_progress) -> tuple[dict[str, Any], list | None, dict[str, Any]]:
    """Run (or resume) the inner search; the chosen config as ``optileuk export`` gives it (the approach's
    selection rule), its ensemble members (or ``None``) and what the search said of it."""
    from optileuk.export import export_config
    from optileuk.runner import Runner

    runner = Runner(study, objective=objective)
    if on_progress is not None:
        runner.on_progress = on_progress
    summary = runner.run()
    rule = job.approach.rule
    exported = export_config(job.name, job.storage, pick=job.pick, selection=rule.label if rule else None)
    metrics = {k: v for k, v in (exported.get("metrics") or {}).items() if not isinstance(v, (dict, list))}
    chosen = exported.get("selection") or {}
    if chosen.get("oof_balanced_accuracy") is not None:  # an ensemble: its own out-of-fold figure
        metrics["balanced_accuracy"] = chosen["oof_balanced_accuracy"]
    inner = {"trial": exported["trial"], "value": exported.get("value", exported.get("values")), "metrics": metrics,
             "selection": chosen, "trials": summary.trials, "seconds": summary.seconds}
    members = [(m["params"], m["weight"]) for m in exported["ensemble"]] if exported.get("ensemble") else None
    return exported["params"], members, inner


def run_job(job: Job, *, on_progress: Callable | None = None) -> dict[str, Any]:
    """One approach on one part (or, part -1, on all the data and the external set); the result (JSON).
    A final fit another rule of the same search already made with the same config is taken, not repeated."""
    from optileuk.storage import open_storage

    storage = open_storage(job.storage)
    stored = _stored(storage, job.name)
    study = job.study()
    objective = study.objective()
    start = time.perf_counter()
    members = None
    if job.approach.tuned:
        params, members, inner = _search(job, study, objective, on_progress)
    else:
        params = jsonable(objective.default_params()) if job.approach.defaults else dict(job.approach.params)
        inner = None
    key = params_key({"params": params, "ensemble": members}) if members else params_key(params)
    mine = stored.get(result_key(job))
    if mine is not None and mine.get("params_key") == key:
        return {**mine, "reused": True}  # trained and scored before
    if not job.approach.tuned and job.approach.search:  # the defaults: maybe what a rule of the search chose
        where = "all" if job.part < 0 else f"outer{job.part}of{job.k}"
        stored = {**_stored(storage, f"{job.approach.search}.{where}"), **stored}
    shared = next((r for r in stored.values() if r.get("params_key") == key), None)
    fit_start = time.perf_counter()
    if shared is not None:  # another rule chose the same config: the same final model, the same held-out scores
        result = {k: v for k, v in shared.items() if k not in ("approach", "inner", "seconds", "reused")}
    else:
        result = score_external(job, objective, params) if job.part < 0 else \
            score_part(job, objective, params, members)
    result.update(approach=job.approach.label, part=job.part, k=job.k, name=job.name, params=params,
                  params_key=key, inner=inner, tuned=job.approach.tuned, shared=shared is not None,
                  ensemble=[[jsonable(p), w] for p, w in members] if members else None,
                  seconds={"search": fit_start - start, "final": time.perf_counter() - fit_start})
    holder = _holder(storage, job.name, study.direction)
    storage.set_study_user_attr(holder, PART_ATTR, {"base": job.base, "approach": job.approach.search or
                                                    job.approach.label, "part": job.part, "k": job.k})
    storage.set_study_user_attr(holder, result_key(job), jsonable(result))
    return jsonable(result)


def score_part(job: Job, objective, params: dict[str, Any], members: list | None = None) -> dict[str, Any]:
    """Train on the other parts, score the held-out part once (``train_final``; an ensemble's members each)."""
    from optileuk.metrics import mask_scores

    final = objective.train_final(params, ensemble=members)
    pred = final.predictions
    out: dict[str, Any] = {"index": pred["index"]}
    if final.task == "classification":
        out.update(y_true=pred["y_true"], y_pred=pred["y_pred"], scores=pred["proba"],
                   probabilities=final.metrics.get("scores") == "probability",
                   heldout={k: final.metrics.get(k) for k in CLASS_METRICS})
    else:
        per = np.array([mask_scores(pred[f"pred_{i}"], pred[f"truth_{i}"]) for i in range(len(pred["index"]))])
        out.update(per_image={"dice": per[:, 0], "iou": per[:, 1], "ssim": per[:, 2]},
                   heldout={k: final.metrics.get(k) for k in SEG_METRICS})
    return out


def score_external(job: Job, objective, params: dict[str, Any]) -> dict[str, Any]:
    """Fit on all the data, apply the model to the external set (classes matched by name)."""
    from optileuk.assess._plan import load_external
    from optileuk.metrics import classification_metrics, mask_scores, segmentation_metrics

    fitted = objective.fit_final(params)
    model = fitted.model
    ext = load_external(job.external, model.classes, "segmentation" if model.task == "segmentation" else
                        "classification")
    pred = model.apply_many(ext.images)
    out: dict[str, Any] = {"external": job.external, "images": len(ext)}
    if model.task == "segmentation":
        want = 2 if model.spec["target"] == "nucleus" else 1
        preds = [m >= want for m in pred.masks]
        truths = [(m == 2) if want == 2 else (m >= 1) for m in ext.masks]
        out["heldout"] = segmentation_metrics(preds, truths)
        out["per_image"] = {"dice": [mask_scores(p, t)[0] for p, t in zip(preds, truths)]}
    else:
        y = np.array([model.classes.index(ext.classes[i]) for i in ext.labels])
        out["heldout"] = classification_metrics(y, pred.labels, pred.scores, model.classes)
        out.update(y_true=y, y_pred=pred.labels)
    return out


# ---- running many -----------------------------------------------------------------------------------
def run_inline(jobs: Sequence[Job], on_done: Callable[[Job, dict], None],
               on_start: Callable[[Job], Callable | None] | None = None) -> None:
    """One job after another in this process (each inner study with its own runner settings)."""
    for job in jobs:
        progress = on_start(job) if on_start else None
        on_done(job, run_job(job, on_progress=progress))


def _jobs_task(jobs: list[Job]) -> list[dict[str, Any]]:
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [run_job(job) for job in jobs]


def run_dask(jobs: Sequence[Job], on_done: Callable[[Job, dict], None], *, workers: int | None,
             scheduler: str | None, on_cluster: Callable[[str], None] | None = None) -> None:
    """The jobs side by side on Dask workers (a local cluster of ``workers`` processes, or the cluster at
    ``scheduler``); each runs its inner search inline in its worker. The rules that choose from one
    search go together, one after another (one driver per study)."""
    from optileuk.runner.cluster import cpu_cluster, results

    together: dict[str, list[Job]] = {}
    for job in jobs:
        together.setdefault(job.name if job.approach.tuned else f"{job.name}#{id(job)}", []).append(job)
    with cpu_cluster(workers, scheduler, on_cluster) as client:
        futures = {client.submit(_jobs_task, group, pure=False): group for group in together.values()}
        for fut, result in results(client, futures, lambda fut: futures[fut][0].name):
            for job, one in zip(futures[fut], result):
                on_done(job, one)
