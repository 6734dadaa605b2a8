"""Helpers of the runner: trial keys, what a finished trial tells the optimizer, the saved run state."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from optileuk import plain
from optileuk.storage import TOLD_KEY


def fingerprint(study, space, inputs: dict[str, Any] | None = None) -> str:
    """What a stored study must have been made from to be resumed: the space, objective, optimizer,
    seed, direction and mode, and ``inputs`` (:meth:`~optileuk.objectives.Objective.inputs`: the files
    and images it reads). Without ``inputs``: the fingerprint studies were stored with before inputs
    were part of it."""
    parts = {
        "space": space.to_dict(),
        "objective": [study.objective_type, _stable(study.objective_type, study.objective_config.model_dump(mode="json"))],
        "optimizer": [study.optimizer_name, study.optimizer_config.model_dump(mode="json")],
        "seed": study.file.seed,
        "direction": study.direction,
    }
    if study.file.objective_seed is not None:  # absent from older studies' fingerprints
        parts["objective_seed"] = study.file.objective_seed
    if study.file.runner.mode != "generational":  # likewise: a study keeps the mode it was made with
        parts["mode"] = study.file.runner.mode
    if study.file.objectives:
        parts["objectives"] = study.file.objectives
    if inputs:  # absent where the study reads no file and no image: those keep their fingerprint
        parts["inputs"] = inputs
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


# keys added to objective configs after studies were first fingerprinted (by objective type, "*": every
# one), with the value that keeps the earlier behaviour: left out of the fingerprint at that value, so
# that studies stored before still resume
_LATER_KEYS = {"*": {("split", "repeats"): 1},
               "analytic": {("noise",): 0.0, ("folds",): 5, ("repeats",): 1, ("defaults",): {}}}


def _stable(kind: str, dump: dict[str, Any]) -> dict[str, Any]:
    """``dump`` (an objective config) without the later keys that hold their earlier-behaviour value."""
    out = json.loads(json.dumps(dump))
    for path, default in {**_LATER_KEYS["*"], **_LATER_KEYS.get(kind, {})}.items():
        holder = out
        for key in path[:-1]:
            holder = holder.get(key) if isinstance(holder, dict) else None
        if isinstance(holder, dict) and holder.get(path[-1], object()) == default:
            del holder[path[-1]]
    return out


STATE_FORMAT = 2  # 1 (unversioned): the optimizer state as a pickle, never read again


def pack_state(run: dict[str, Any], optimizer_state: dict[str, Any]) -> dict[str, Any]:
    """The run state saved in the study: the loop's position and counts as JSON, the optimizer's
    state as data (``optimizer_state`` encoded by :func:`optileuk.plain.encode`)."""
    return {"format": STATE_FORMAT, **run, "optimizer": optimizer_state}


def unpack_state(saved: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """``(run part, optimizer state)`` of a saved state; :class:`plain.NotData` for anything else
    (an older optileuk's pickle, a blob not written by optileuk). Nothing is unpickled."""
    if not isinstance(saved, dict) or saved.get("format") != STATE_FORMAT or "optimizer" not in saved:
        raise plain.NotData("not a run state of this optileuk version")
    return {k: v for k, v in saved.items() if k != "optimizer"}, plain.decode(saved["optimizer"])


def trial_key(t: FrozenTrial) -> tuple | None:
    """Where a stored trial belongs: ``(generation, batch, index)``, or ``("ask", ticket)``."""
    ua = t.user_attrs
    if "ask" in ua:
        return ("ask", ua["ask"])
    if "generation" in ua and "index" in ua:
        return (ua["generation"], ua.get("batch", 1), ua["index"])
    return None


def oriented(trial: FrozenTrial, sign):
    """A complete trial's value(s) as the optimizer minimises them (``sign``: +-1, or one per objective)."""
    if np.ndim(sign):
        return np.asarray(sign) * np.asarray(trial.values, dtype=float)
    return sign * float(trial.value)


def penalty_from(worst, sign):
    """What a failed candidate tells the optimizer: clearly worse than ``worst`` (per objective)."""
    if worst is None:
        return np.full(len(sign), 1e12) if np.ndim(sign) else 1e12
    if np.ndim(sign):
        worst = np.asarray(worst, dtype=float)
        return worst + np.maximum(1.0, np.abs(worst))
    return worst + max(1.0, abs(worst))


def penalty_before(number: int, sign, trials):
    """The value a failed candidate gives the optimizer: clearly worse than every complete trial
    before it (by trial number), so a replay after a crash computes the same penalty."""
    seen = [oriented(t, sign) for t in trials if t.state == TrialState.COMPLETE and t.number < number and t.values]
    return penalty_from(np.max(seen, axis=0) if seen else None, sign) if np.ndim(sign) else \
        penalty_from(max(seen) if seen else None, sign)


def told_value(trial: FrozenTrial, sign, trials):
    """The (minimised) value(s) the optimizer was given for a stored trial."""
    multi = bool(np.ndim(sign))
    if TOLD_KEY in trial.system_attrs:
        told = trial.system_attrs[TOLD_KEY]
        return np.asarray(told, dtype=float) if multi else float(told)
    if trial.state == TrialState.COMPLETE:
        return oriented(trial, sign)
    steps = trial.intermediate_values
    if trial.state == TrialState.PRUNED and steps and not multi:
        return sign * steps[max(steps)]
    return penalty_before(trial.number, sign, trials)


def config_for_display(space, trial: FrozenTrial) -> dict[str, Any]:
    config = space.from_record(trial.params, trial.user_attrs)
    return {k: (f"{int(v.sum())}/{v.size} selected" if isinstance(v, np.ndarray) else v) for k, v in config.items()}
