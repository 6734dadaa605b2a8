"""``optileuk train``: the final model of an exported config, scored once on the held-out test split.

The training config is what ``optileuk export`` writes (plain YAML/JSON): the objective with its
data and split settings, the seed of the split, and the tuned ``params`` (with ``--top K``, a
``top`` list of alternatives). The final model is fitted on the whole search part (training +
validation), then the test split — held out before the search began, and never seen by it — is
scored once -- by the fitted model's own path for new images, so what ``optileuk predict`` applies
is what was scored. The run folder gets ``config.yaml`` (the config used), ``metrics.json``,
``predictions.npz`` (the predictions the metrics come from) and the model bundle
(:mod:`optileuk.bundle`: ``model.json``, ``weights.safetensors``, ``arrays.npz``,
``estimators.skops``; data only, no pickle).

Example:
    >>> run_dir = train("best.yaml", "runs/best")  # doctest: +SKIP
"""

from __future__ import annotations

import datetime as _dt
import json
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import yaml
from pydantic import BaseModel, ConfigDict, Field

from optileuk.errors import ConfigError, Problem
from optileuk.plain import jsonable
from optileuk.registry import OBJECTIVES
from optileuk.validation import read_yaml, validate


class TrainFile(BaseModel):
    """A training config (the keys ``optileuk export`` writes)."""

    model_config = ConfigDict(extra="forbid")
    objective: dict[str, Any]
    params: dict[str, Any]
    seed: int = Field(0, ge=0, description="seed of the data split and of training")
    study: Optional[str] = None
    storage: Optional[str] = None
    direction: Optional[str] = None
    trial: Optional[int] = None
    value: Optional[float] = None
    value_is: Optional[str] = None  # what the value is (e.g. "1 - balanced accuracy"), for the reader
    metrics: Optional[dict[str, Any]] = None  # the trial's other recorded metrics and the split they come from
    objectives: Optional[list[str]] = None  # a multi-objective study: the values of the point picked
    values: Optional[dict[str, float]] = None
    pick: Optional[str] = None
    optimizer: Optional[dict[str, Any]] = None
    top: Optional[list[dict[str, Any]]] = None
    selection: Optional[dict[str, Any]] = None  # the rule that chose params, and why
    ensemble: Optional[list[dict[str, Any]]] = None  # selection: ensemble: [{trial, weight, value, params}]


def load_training_config(path: Path, rank: int = 1):
    """Validate a training config; return ``(file, objective, params)``."""
    src = str(path)
    data = read_yaml(path, what="training config")
    if not isinstance(data, dict):
        raise ConfigError([Problem(src, "", "must be a YAML mapping (objective, params, seed; as optileuk export writes)", data)])
    if "params" not in data and {"search_space", "optimizer", "budget"} & set(data):
        name = data.get("name", "<study name>")
        raise ConfigError([Problem(src, "", "is a study file; optileuk train takes the config that optileuk export "
                                   f"writes from a finished study: run the study, then optileuk export {name} -o best.yaml "
                                   "and optileuk train best.yaml")])
    tf, problems = validate(TrainFile, data, src)
    if tf is None:
        raise ConfigError(problems)
    params = tf.params
    if rank > 1:
        if not tf.top or rank > len(tf.top):
            raise ConfigError([Problem(src, "top", f"must list at least {rank} configs for --rank {rank} "
                                       "(export with --top K)", len(tf.top or []))])
        params = tf.top[rank - 1].get("params", {})
    spec = dict(tf.objective)
    kind = spec.pop("type", None)
    found = OBJECTIVES.resolve(kind) if isinstance(kind, str) else None
    if found is None:
        raise ConfigError([Problem(src, "objective.type", f"must be one of {', '.join(OBJECTIVES.display_names())}", kind)])
    cls = found[0]
    cfg, problems = validate(cls.Config, spec, src, ("objective",))
    if cfg is not None:
        cfg = cfg.anchored(Path(path).parent)
        problems += cfg.file_problems(src)
        split = getattr(cfg, "split", None)
        if split is not None and split.test_size == 0:
            from optileuk.objectives import NO_TEST

            problems.append(Problem(src, "objective.split.test_size", NO_TEST, 0))
    if cfg is None or problems:
        raise ConfigError(problems)
    from optileuk.objectives import Objective

    if cls.fit_final is Objective.fit_final:
        raise ConfigError([Problem(src, "objective.type", "has no final model to train (optileuk train works for "
                                   "dknn, unet_plr, segmentation, handcrafted, feature_selection and pipeline)", kind)])
    objective = cls(cfg, seed=tf.seed)
    objective.check_device()
    return tf, objective, params, kind


def free_folder(base: Path) -> Path:
    """``base``, or ``base-2``, ``base-3``, ... the first that does not exist yet."""
    out, n = base, 1
    while out.exists():
        n += 1
        out = base.with_name(f"{base.name}-{n}")
    return out


def train(config: str | Path, run_dir: str | Path | None = None, *, rank: int = 1,
          on_step: Callable[[int, int, str], None] | None = None, loaded=None) -> tuple[Path, dict[str, Any]]:
    """Fit the config's final model and write the run folder; return it and the metrics.

    ``loaded``: what :func:`load_training_config` returned, when the caller validated first.
    """
    import torch

    from optileuk import __version__

    config = Path(config)
    tf, objective, params, kind = loaded or load_training_config(config, rank)
    members = [(m.get("params", {}), float(m.get("weight", 1.0))) for m in tf.ensemble] if tf.ensemble and rank == 1 else None
    final = objective.train_final(params, on_step=on_step, ensemble=members)
    if final.model is None:
        raise ConfigError([Problem(str(config), "objective.type", "trained no model to keep (its train_final must "
                                   "return a Final with a FittedModel: optileuk.objectives._model)", kind)])
    out = Path(run_dir) if run_dir is not None else free_folder(Path("runs") / (tf.study or kind))
    out.mkdir(parents=True, exist_ok=True)
    used = {"objective": {"type": kind, **objective.config.model_dump(mode="json")}, "params": jsonable(params),
            "seed": tf.seed, "rank": rank, "from": str(config), "study": tf.study, "trial": tf.trial,
            "search_value": tf.value, "selection": tf.selection,
            "trained": _dt.datetime.now().isoformat(timespec="seconds"),
            "optileuk": __version__, "torch": str(torch.__version__)}
    if members:
        used["ensemble"] = jsonable(tf.ensemble)
    (out / "config.yaml").write_text(yaml.safe_dump(used, sort_keys=False))
    metrics = {"task": final.task, **final.metrics, "split_sizes": objective.split_sizes, "facts": jsonable(final.facts)}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    np.savez_compressed(out / "predictions.npz", **final.predictions)
    from optileuk import bundle

    bundle.save(final.model, out, objective=used["objective"], params=used["params"], training_data=final.training_data,
                metrics={k: v for k, v in metrics.items() if k not in ("facts",)},
                member_params=[jsonable(p) for p, _ in members] if members else None)
    save_extras = getattr(final.model, "save_extras", None)
    if save_extras is not None:  # e.g. a dknn's trunk.safetensors, for other objectives to start from
        save_extras(out, training_data=final.training_data)
    return out, metrics


__all__ = ["TrainFile", "free_folder", "load_training_config", "train"]
