"""Which trial of a study is "the best": every rule reads the stored trials (never re-evaluates) and says
why it chose what it chose. Used by export (and so train and assess), the run summary and the report."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Mapping

import numpy as np
from optuna.trial import FrozenTrial, TrialState

from optileuk.errors import StorageError
from optileuk.folds import paired, read_oof
from optileuk.selection._ensemble import greedy
from optileuk.selection._race import Race
from optileuk.selection._rules import Rule
from optileuk.storage import ANCHOR_ATTR, RACE_ATTR, RACE_SUFFIX, best_trials, read_trials, trials_with_attr

RACE_PLAN_ATTR = "optileuk.race"  # user attr of the race study: {"top": [...], "first_repeat": r, "budget": n}


@dataclass
class Choice:
    """What a rule chose: one trial (or an ensemble's members with their weights), and why."""

    rule: str
    trials: list[FrozenTrial]
    weights: list[float]
    reason: str
    facts: dict[str, Any] = field(default_factory=dict)

    @property
    def trial(self) -> FrozenTrial:
        return self.trials[0]

    @property
    def ensemble(self) -> bool:
        return len(self.trials) > 1


class Chooser:
    """The selection rules over one stored single-objective study.

    Args:
        storage, study_id, name: the study.
        maximize: its direction.
        space: its search space (bound), to read each trial's config; ``None``: the raw params.
        defaults: the objective's defaults (``one_se`` measures how far a trial is from them).
    """

    def __init__(self, storage, study_id: int, name: str, *, maximize: bool = False, space=None,
                 defaults: Mapping[str, Any] | None = None):
        self.storage, self.study_id, self.name = storage, study_id, name
        self.sign = -1.0 if maximize else 1.0
        self.space, self.defaults = space, defaults
        self._best: list[FrozenTrial] | None = None

    # ---- reading -----------------------------------------------------------------------------------
    def ranked(self, k: int) -> list[FrozenTrial]:
        """The ``k`` best complete trials by mean, best first."""
        return best_trials(self.storage, self.study_id, k, maximize=self.sign < 0)

    def best(self) -> FrozenTrial:
        found = self.ranked(1)
        if not found:
            raise StorageError(f"storage: study '{self.name}' has no complete trial to choose from")
        return found[0]

    def anchor(self) -> FrozenTrial | None:
        found = [t for t in trials_with_attr(self.storage, self.study_id, ANCHOR_ATTR)
                 if t.state == TrialState.COMPLETE]
        return found[0] if found else None

    def config(self, trial: FrozenTrial) -> dict[str, Any]:
        """A trial's configuration as the objective takes it (the anchor: the defaults it evaluated)."""
        if trial.user_attrs.get(ANCHOR_ATTR):
            return dict(trial.user_attrs.get("defaults") or {})
        return self.space.from_record(trial.params, trial.user_attrs) if self.space is not None else dict(trial.params)

    def oriented(self, trial: FrozenTrial) -> float:
        return self.sign * float(trial.values[0])

    # ---- the rules ---------------------------------------------------------------------------------
    def choose(self, rule: Rule) -> Choice:
        return {"best": self._best_rule, "one_se": self._one_se, "anchored": self._anchored, "race": self._race,
                "ensemble": self._ensemble}[rule.rule](rule)

    def _best_rule(self, rule: Rule) -> Choice:
        best = self.best()
        return Choice(rule.label, [best], [1.0], f"trial {best.number}: the lowest mean", self._facts(best))

    def _one_se(self, rule: Rule) -> Choice:
        best = self.best()
        se = best.user_attrs.get("value_se")
        if se is None:
            return Choice(rule.label, [best], [1.0], f"trial {best.number}: the best (it recorded no standard error, "
                          "so one_se cannot widen the choice)", self._facts(best))
        limit = self.oriented(best) + float(se)
        near = self._within(limit)
        if self.defaults is None or self.space is None:
            return Choice(rule.label, [best], [1.0], f"trial {best.number}: the best ({len(near)} within one standard "
                          "error; no defaults stored to measure closeness)", self._facts(best))
        far = {t.number: distance(self.space, self.config(t), self.defaults) for t in near}
        chosen = min(near, key=lambda t: (far[t.number], self.oriented(t), t.number))
        return Choice(rule.label, [chosen], [1.0],
                      f"trial {chosen.number}: of the {len(near)} trials within one standard error ({float(se):.4g}) "
                      f"of the best (trial {best.number}, {best.values[0]:.4g}), the closest to the defaults "
                      f"(distance {far[chosen.number]:.3g})", {**self._facts(chosen), "within_one_se": len(near)})

    def _within(self, limit: float) -> list[FrozenTrial]:
        k = 64
        while True:
            ranked = self.ranked(k)
            inside = [t for t in ranked if self.oriented(t) <= limit + 1e-12]
            if len(inside) < len(ranked) or len(ranked) < k:
                return inside
            k *= 4

    def _anchored(self, rule: Rule) -> Choice:
        anchor = self.anchor()
        if anchor is None:
            raise StorageError(f"storage: study '{self.name}' holds no evaluation of the objective's defaults: "
                               "selection anchored needs it (run the study with selection: anchored; a finished "
                               "study then evaluates only that one trial)")
        best = self.best()
        if best.number == anchor.number:
            return Choice(rule.label, [anchor], [1.0], f"the defaults (trial {anchor.number}): no trial scored better",
                          self._facts(anchor))
        d = paired(best.user_attrs, anchor.user_attrs)
        facts = {**self._facts(best), "versus_defaults": d}
        if d is None:
            return Choice(rule.label, [best], [1.0], f"trial {best.number}: the best (no fold values to compare it "
                          "with the defaults on the same folds)", facts)
        gain = -self.sign * d["difference"]  # how much better than the defaults, in the value's units
        if gain > d["se"]:
            return Choice(rule.label, [best], [1.0], f"trial {best.number}: it beats the defaults (trial "
                          f"{anchor.number}) by {gain:.4g} on the same folds, more than one paired standard error "
                          f"({d['se']:.4g})", facts)
        return Choice(rule.label, [anchor], [1.0], f"the defaults (trial {anchor.number}): the best (trial "
                      f"{best.number}) beats them by {gain:.4g} only, within one paired standard error ({d['se']:.4g})",
                      {**self._facts(anchor), "versus_defaults": d, "best_trial": best.number})

    def _race(self, rule: Rule) -> Choice:
        plan, results = self.race_record()
        if plan is None:
            raise StorageError(f"storage: study '{self.name}' has not been raced: selection race evaluates the top "
                               "trials again (run the study with selection: race; a finished study then runs only "
                               "the race)")
        race = replay(plan, results)
        if race.stopped_by is None:
            raise StorageError(f"storage: the race of study '{self.name}' is not finished ({race.spent} of "
                               f"{plan['budget']} evaluations stored): run the study again to finish it")
        trials = {t.number: t for t in read_trials(self.storage, self.study_id, numbers=plan["top"])}
        winner = trials[race.winner]
        means = {t: float(np.mean(v)) for t, v in race.values.items() if v}
        return Choice(rule.label, [winner], [1.0],
                      f"trial {winner.number}: raced {len(plan['top'])} trials over {race.rounds} new repeat(s) "
                      f"({race.spent} evaluations, stopped: {race.stopped_by}); best mean on them "
                      f"{means.get(winner.number, float('nan')):.4g}",
                      {**self._facts(winner), "race": {"top": plan["top"], "rounds": race.rounds, "spent": race.spent,
                                                       "survivors": race.survivors, "race_means": means,
                                                       "stopped_by": race.stopped_by}})

    def race_record(self) -> tuple[dict | None, dict[tuple[int, int], list[float] | None]]:
        """The race's plan and its stored evaluations by ``(trial, repeat)`` (``None``: failed)."""
        try:
            sid = self.storage.get_study_id_from_name(self.name + RACE_SUFFIX)
        except KeyError:
            return None, {}
        plan = self.storage.get_study_user_attrs(sid).get(RACE_PLAN_ATTR)
        results: dict[tuple[int, int], list[float] | None] = {}
        for t in read_trials(self.storage, sid):
            key = t.user_attrs.get(RACE_ATTR)
            if not key or t.state not in (TrialState.COMPLETE, TrialState.FAIL):
                continue
            values = t.user_attrs.get("fold_values") or ([t.values[0]] if t.values else None)
            results[(int(key["of"]), int(key["repeat"]))] = (
                [self.sign * float(v) for v in values] if t.state == TrialState.COMPLETE and values else None)
        return plan, results

    def _ensemble(self, rule: Rule) -> Choice:
        library = [t for t in self.ranked(rule.library) if t.user_attrs.get("oof")]
        if not library:
            raise StorageError(f"storage: study '{self.name}' kept no out-of-fold predictions: selection "
                               f"{rule.label} needs them (run the study with selection: {rule.label})")
        y, _ = read_oof(library[0].user_attrs["oof"])
        preds = [read_oof(t.user_attrs["oof"])[1] for t in library]
        n_classes = int(max(int(y.max()), *(int(p.max()) for p in preds))) + 1
        counts, score = greedy(y, preds, rule.size, n_classes)
        order = sorted((i for i, c in enumerate(counts) if c), key=lambda i: (-counts[i], i))
        members = [library[i] for i in order]
        weights = [counts[i] / rule.size for i in order]
        shown = ", ".join(f"trial {t.number} x{counts[i]}" for t, i in zip(members, order))
        return Choice(rule.label, members, weights,
                      f"an ensemble of {len(members)} trial(s) ({shown}) drawn from the best {len(library)}: "
                      f"out-of-fold balanced accuracy {score:.4g} (on the folds that chose it: optimistic)",
                      {**self._facts(members[0]), "oof_balanced_accuracy": score})

    # ---- facts and warnings ------------------------------------------------------------------------
    def _facts(self, trial: FrozenTrial) -> dict[str, Any]:
        ua = trial.user_attrs
        return {"trial": trial.number, "value": trial.values[0], "value_se": ua.get("value_se"),
                "n_folds": ua.get("n_folds"), "defaults": bool(ua.get(ANCHOR_ATTR))}

    def trust(self, first: int = 5) -> dict[str, Any]:
        """How far the best can be trusted: its standard error, its paired difference to the defaults (when
        evaluated), and a warning when it is within one standard error of the defaults or of the best of the
        first trials (numbers below ``max(first, 10% of the trials)``)."""
        best = self.best()
        se = best.user_attrs.get("value_se")
        out: dict[str, Any] = {"trial": best.number, "value": best.values[0], "value_se": se,
                               "n_folds": best.user_attrs.get("n_folds"), "warnings": []}
        anchor = self.anchor()
        if anchor is not None:
            d = paired(best.user_attrs, anchor.user_attrs)
            out["defaults"] = {"trial": anchor.number, "value": anchor.values[0], "paired": d}
            if best.number != anchor.number and d is not None and -self.sign * d["difference"] <= d["se"]:
                out["warnings"].append(f"the best (trial {best.number}) is within one paired standard error of the "
                                       f"defaults (trial {anchor.number}): not distinguishable from them")
        elif se is not None:
            early = self._first_best(first)
            if early is not None and early.number != best.number and \
                    self.oriented(early) - self.oriented(best) <= float(se):
                out["first"] = {"trial": early.number, "value": early.values[0]}
                out["warnings"].append(f"the best (trial {best.number}) is within one standard error ({float(se):.3g}) "
                                       f"of trial {early.number}, one of the first trials: the search found nothing "
                                       "clearly better than where it started")
        return out

    def _first_best(self, first: int) -> FrozenTrial | None:
        from optileuk.storage import finished_columns

        cols = finished_columns(self.storage, self.study_id)
        n = max(first, int(math.ceil(0.1 * len(cols.number))))
        done = [(self.sign * v[0], int(num)) for num, s, v in zip(cols.number, cols.state, cols.values)
                if s == "COMPLETE" and v and num < n]
        if not done:
            return None
        return read_trials(self.storage, self.study_id, numbers=[min(done)[1]])[0]


def replay(plan: Mapping[str, Any], results: Mapping[tuple[int, int], list[float] | None]) -> Race:
    """The race of ``plan`` run on stored ``results`` as far as they go (``stopped_by`` stays ``None`` when
    an evaluation it needs is not stored yet)."""
    race = Race(list(plan["top"]), int(plan["first_repeat"]), int(plan["budget"]))
    share = float(plan.get("val_share", 0.0))
    while True:
        asked = race.round()
        if asked is None or any(k not in results for k in asked):
            return race
        race.tell({k: results[k] for k in asked}, share)


def distance(space, config: Mapping[str, Any], defaults: Mapping[str, Any]) -> float:
    """How far a configuration is from the defaults, over the searched parameters: numbers by their share
    of the box (log parameters on the log scale), a different category or flag 1, masks the share of bits
    that differ; averaged over the parameters both set."""
    parts = []
    for name, p in space.params.items():
        if name not in config or name not in defaults:
            continue
        a, b = config[name], defaults[name]
        if p.type in ("float", "int"):
            lo, hi = p.bounds()[0][0], p.bounds()[1][0]
            ea, eb = float(p.encode(a)[0]), float(p.encode(_clip(p, b))[0])
            parts.append(abs(ea - eb) / (hi - lo) if hi > lo else 0.0)
        elif p.type == "mask":
            parts.append(float(np.mean(np.asarray(a, bool) != np.asarray(b, bool))))
        else:
            parts.append(0.0 if a == b else 1.0)
    return float(np.mean(parts)) if parts else 0.0


def _clip(p, value):
    """A default outside the searched range measured from the nearest end (a log parameter needs > 0)."""
    try:
        return min(max(value, p.low), p.high)
    except TypeError:
        return value
