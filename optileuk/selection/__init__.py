"""Selection rules: which trial of a study is "the best" -- for ``export``, ``train``, ``assess``, the run
summary and the report -- when the study's values are noisy estimates from a few hundred cells.

* ``best``: the lowest mean over the folds (what every other tool returns);
* ``one_se``: among the trials within one standard error of the best, the one closest to the
  objective's defaults (glmnet's ``lambda.1se``);
* ``race``: the top trials evaluated again on new repeats until a paired test separates them (irace's
  F-race, SMAC's intensification);
* ``anchored``: the defaults, evaluated as a trial, unless the best beats them on the same folds by more
  than one paired standard error;
* ``ensemble:N``: Caruana's greedy ensemble selection over the top trials' out-of-fold predictions.

Example:
    >>> parse_rules(["one_se", "ensemble:5"])[1].label
    'ensemble:5'
"""

from optileuk.selection._choose import RACE_PLAN_ATTR, Choice, Chooser, distance, replay
from optileuk.selection._ensemble import greedy, oof_score, vote
from optileuk.selection._race import Race, race_budget
from optileuk.selection._rules import RULES, SUMMARY, Rule, needs, parse_rules, parse_text, rule_problems

__all__ = ["Choice", "Chooser", "RACE_PLAN_ATTR", "RULES", "Race", "Rule", "SUMMARY", "distance", "greedy", "needs",
           "oof_score", "parse_rules", "parse_text", "race_budget", "replay", "rule_problems", "vote"]
