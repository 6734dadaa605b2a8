"""Helpers of the runner: trial keys, what a finished trial tells the optimizer, state blobs."""

from __future__ import annotations

import base64
import hashlib
import json
import pickle
import zlib
from datetime import datetime
from typing import Any

import numpy as np
from optuna.trial import FrozenTrial, TrialState

TOLD_KEY = "optileuk:told"


def fingerprint(study, space) -> str:
    parts = {
        "space": space.to_dict(),
        "objective": [study.objective_type, study.objective_config.model_dump(mode="json")],
        "optimizer": [study.optimizer_name, study.optimizer_config.model_dump(mode="json")],
        "seed": study.file.seed,
        "direction": study.direction,
    }
    if study.file.objective_seed is not None:  # absent from older studies' fingerprints
        parts["objective_seed"] = study.file.objective_seed
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:20]


def encode_state(state: dict[str, Any]) -> str:
    return base64.b64encode(zlib.compress(pickle.dumps(state, protocol=pickle.HIGHEST_PROTOCOL))).decode()


def decode_state(text: str) -> dict[str, Any]:
    return pickle.loads(zlib.decompress(base64.b64decode(text)))


def _state(state: TrialState):
    from optileuk.runner._executor import Outcome

    return Outcome(state, None, start=datetime.now())


def _running():
    return _state(TrialState.RUNNING)


def _key(t: FrozenTrial) -> tuple[int, int, int] | None:
    ua = t.user_attrs
    if "generation" in ua and "index" in ua:
        return (ua["generation"], ua.get("batch", 1), ua["index"])
    return None


def _penalty_before(number: int, sign: float, study_or_trials) -> float:
    """The value a failed candidate gives the optimizer: clearly worse than every complete trial
    before it (by trial number), so a replay after a crash computes the same penalty."""
    trials = study_or_trials.get_trials(deepcopy=False) if hasattr(study_or_trials, "get_trials") else study_or_trials
    seen = [sign * t.value for t in trials if t.state == TrialState.COMPLETE and t.number < number and t.value is not None]
    if not seen:
        return 1e12
    worst = max(seen)
    return worst + max(1.0, abs(worst))


def _finish(storage, trial_id: int, done: FrozenTrial) -> None:
    """Finish a live trial: the attrs the evaluation produced, then its final state and value."""
    for key, value in done.user_attrs.items():
        storage.set_trial_user_attr(trial_id, key, value)
    for key, value in done.system_attrs.items():
        storage.set_trial_system_attr(trial_id, key, value)
    storage.set_trial_state_values(trial_id, done.state, None if done.value is None else [done.value])


def _told(trial: FrozenTrial, sign: float, trials) -> float:
    if TOLD_KEY in trial.system_attrs:
        return float(trial.system_attrs[TOLD_KEY])
    if trial.state == TrialState.COMPLETE:
        return sign * float(trial.value)
    steps = trial.intermediate_values
    if trial.state == TrialState.PRUNED and steps:
        return sign * steps[max(steps)]
    return _penalty_before(trial.number, sign, trials)


def _config_for_display(space, trial: FrozenTrial) -> dict[str, Any]:
    config = space.from_record(trial.params, trial.user_attrs)
    return {k: (f"{int(v.sum())}/{v.size} selected" if isinstance(v, np.ndarray) else v) for k, v in config.items()}


def now() -> datetime:
    return datetime.now()
