"""Names optileuk gives its own entries in an Optuna study (study and trial attrs)."""

from __future__ import annotations

from optuna.trial import TrialState

STATE_KEY = "optileuk:state"  # study system attr: the optimizer's saved state
FINGERPRINT_KEY = "optileuk:fingerprint"  # study system attr: what the study was made from
STUDY_ATTR = "optileuk.study"  # study user attr: the validated study file, as data
MASKS_ATTR = "optileuk.mask_lengths"  # study user attr: lengths bound to length: auto masks
DEFAULTS_ATTR = "optileuk.defaults"  # study user attr: the objective's defaults (selection rules compare with them)
ANCHOR_ATTR = "anchor"  # trial user attr: this trial is the objective's defaults (selection: anchored)
RACE_ATTR = "race"  # trial user attr (in the study <name>.race): {"of": trial number, "repeat": r}
RACE_SUFFIX = ".race"  # the study holding a study's race evaluations
TOLD_KEY = "optileuk:told"  # trial system attr: the value the optimizer was given (failed/pruned)
STALE_KEY = "optileuk:stale"  # trial system attr: failed by a later run (left unfinished by an old one)
FINISHED = (TrialState.COMPLETE, TrialState.FAIL, TrialState.PRUNED)
