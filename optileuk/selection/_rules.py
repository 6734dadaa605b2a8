"""Selection rules as a study file and the command line name them.

``selection: one_se`` (one rule), ``selection: ensemble:5`` (a rule with its size), ``selection:
{rule: race, top: 5, budget: 0.2}`` (a rule with its settings), or a list of those: the first is the
study's rule, the others are made ready too (the defaults evaluated for ``anchored``, the race run,
out-of-fold predictions kept for ``ensemble``) so that ``optileuk export --selection`` and ``optileuk
assess --selection`` can use them on the same trials.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

RULES = ("best", "one_se", "race", "anchored", "ensemble")
SUMMARY = {
    "best": "the trial with the lowest mean over the folds (the argmin)",
    "one_se": "of the trials within one standard error of the best, the one closest to the objective's defaults",
    "race": "the top trials evaluated again on new repeats of the folds until a paired test separates them",
    "anchored": "the objective's defaults, unless the best beats them on the same folds by more than one paired "
                "standard error",
    "ensemble": "a weighted vote of the top trials, chosen greedily on their out-of-fold predictions (Caruana et al.)",
}


class Rule(BaseModel):
    """One selection rule and its settings."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    rule: Literal["best", "one_se", "race", "anchored", "ensemble"]
    top: int = Field(5, ge=2, le=50, description="race: trials raced (the best by mean)")
    budget: float = Field(0.2, gt=0, le=5, description="race: evaluations allowed, as a share of the study's trials")
    size: int = Field(5, ge=1, le=200, description="ensemble: greedy steps (members drawn with replacement)")
    library: int = Field(20, ge=1, le=500, description="ensemble: the best trials it draws its members from")

    @model_validator(mode="before")
    @classmethod
    def _from_text(cls, data: Any) -> Any:
        if isinstance(data, str):
            return parse_text(data)
        return data

    @property
    def label(self) -> str:
        """How reports and ``assess`` name it: ``one_se``, ``race``, ``ensemble:5`` ..."""
        if self.rule == "ensemble":
            return f"ensemble:{self.size}"
        if self.rule == "race" and self.top != 5:
            return f"race:{self.top}"
        return self.rule


def parse_text(text: str) -> dict[str, Any]:
    """``"ensemble:5"`` -> ``{"rule": "ensemble", "size": 5}``; ``"race:8"`` -> top 8; a plain name as it is."""
    name, _, arg = str(text).strip().partition(":")
    if name not in RULES:
        raise ValueError(f"must be one of {', '.join(RULES)} (ensemble:N, race:K), got {text!r}")
    if not arg:
        return {"rule": name}
    if name not in ("ensemble", "race") or not arg.isdigit():
        raise ValueError(f"only ensemble:N and race:K take a number, got {text!r}")
    return {"rule": name, ("size" if name == "ensemble" else "top"): int(arg)}


def parse_rules(value: Any) -> list[Rule]:
    """The rules of a ``selection`` value (one rule or a list); raises ``ValueError`` naming the bad one."""
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError("must name at least one rule")
    rules = []
    for item in items:
        try:
            rules.append(item if isinstance(item, Rule) else Rule.model_validate(item))
        except ValidationError as exc:  # one sentence as every config error reads, not pydantic's report
            from optileuk.validation import problems_from

            raise ValueError(str(problems_from(exc, "")[0])) from None
    names = [r.rule for r in rules]
    if len(set(names)) < len(names):
        raise ValueError(f"names a rule twice: {', '.join(r.label for r in rules)} (one setting per rule)")
    return rules


def needs(rules: list[Rule]) -> dict[str, Any]:
    """What a run must do besides the search for these rules: evaluate the defaults (``anchor``), keep
    out-of-fold predictions (``oof``), race (``race``: the race rule, or ``None``)."""
    return {"anchor": any(r.rule == "anchored" for r in rules), "oof": any(r.rule == "ensemble" for r in rules),
            "race": next((r for r in rules if r.rule == "race"), None)}


def rule_problems(rules: list[Rule], obj_cls, obj_type: str, src: str, *, multi: bool = False) -> list:
    """Rules the objective can serve (a race evaluates again on new repeats of the folds, an ensemble
    votes with classifiers' out-of-fold predictions); a multi-objective study picks from its front
    (``--pick``) instead. One :class:`~optileuk.errors.Problem` each."""
    from optileuk.errors import Problem

    labels = [r.label for r in rules]
    if multi and labels != ["best"]:
        return [Problem(src, "selection", "is for single-objective studies; a multi-objective study's point is chosen "
                        "from its Pareto front with optileuk export --pick", labels)]
    out = []
    for i, rule in enumerate(rules):
        where = "selection" if len(rules) == 1 else f"selection[{i}]"
        if rule.rule == "race" and not getattr(obj_cls, "resamples", False):
            out.append(Problem(src, where, f"race evaluates trials again on new repeats of the folds; the {obj_type} "
                               "objective cannot (it has no folds to draw again)", rule.label))
        if rule.rule == "ensemble" and not getattr(obj_cls, "predicts_oof", False):
            out.append(Problem(src, where, f"{rule.label} votes with the out-of-fold predictions of classifiers; the "
                               f"{obj_type} objective records none", rule.label))
    return out
