"""Racing the best trials (irace's F-race, SMAC's intensification): evaluate them again on new
resamples and drop those a paired test shows to be worse, until one is left or the budget is spent.

The race is a pure procedure over results: :class:`Race` says which evaluations the next round needs
(each surviving trial on one new repeat of the folds), is told their fold values, and eliminates.
The runner feeds it evaluations; ``optileuk export`` replays it from the stored ones. Both get the
same winner because both follow the same steps in the same order.

The folds the search scored are left out of the race's comparisons: they chose the top trials, so
every one of them looks better on them than it is (the winner's curse); only the new repeats are
compared, each survivor on the same ones, pairwise.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from optileuk.folds import corrected_se

ALPHA = 0.05  # one-sided level of the paired test that drops a trial


@dataclass
class Race:
    """The race of ``top`` (trial numbers, best mean first) on repeats ``first_repeat``, ``first_repeat
    + 1``, ... with at most ``budget`` evaluations in all.

    Example:
        >>> race = Race([3, 7], first_repeat=1, budget=4)
        >>> race.round()
        [(3, 1), (7, 1)]
        >>> race.tell({(3, 1): [0.1, 0.12, 0.11], (7, 1): [0.3, 0.33, 0.31]}, val_share=0.5)
        >>> race.survivors, race.winner
        ([3], 3)
    """

    top: list[int]
    first_repeat: int
    budget: int
    survivors: list[int] = field(init=False)
    values: dict[int, list[float]] = field(init=False)
    rounds: int = field(default=0, init=False)
    spent: int = field(default=0, init=False)
    stopped_by: str | None = field(default=None, init=False)

    def __post_init__(self) -> None:
        self.survivors = list(self.top)
        self.values = {t: [] for t in self.top}
        if len(self.top) < 2:
            self.stopped_by = "one trial: nothing to race"

    def round(self) -> list[tuple[int, int]] | None:
        """The evaluations of the next round, ``(trial, repeat)``; ``None`` when the race is over."""
        if self.stopped_by is not None:
            return None
        if len(self.survivors) < 2:
            self.stopped_by = "separated"
            return None
        if self.spent + len(self.survivors) > self.budget:
            self.stopped_by = "budget"
            return None
        repeat = self.first_repeat + self.rounds
        return [(t, repeat) for t in self.survivors]

    def tell(self, results: dict[tuple[int, int], Sequence[float] | None], val_share: float) -> None:
        """The fold values of this round's evaluations (``None``: the evaluation failed, the trial is out)."""
        asked = self.round()
        assert asked is not None, "the race is over"
        self.spent += len(asked)
        self.rounds += 1
        for trial, repeat in asked:
            got = results.get((trial, repeat))
            if got is None or not len(got) or not all(math.isfinite(v) for v in got):
                self.survivors.remove(trial)
            else:
                self.values[trial] += [float(v) for v in got]
        self._eliminate(val_share)

    def _eliminate(self, val_share: float) -> None:
        if len(self.survivors) < 2:
            return
        leader = self.leader()
        keep = [leader]
        for t in self.survivors:
            if t != leader and not self.worse(t, leader, val_share):
                keep.append(t)
        self.survivors = [t for t in self.survivors if t in keep]

    def worse(self, t: int, leader: int, val_share: float) -> bool:
        """Whether ``t`` is worse than ``leader`` by a one-sided paired t-test on the race's folds (corrected
        for overlapping training parts)."""
        from scipy.stats import t as student

        d = np.asarray(self.values[t]) - np.asarray(self.values[leader])
        se = corrected_se(d, val_share)
        if se is None or len(d) < 2:
            return False
        if se == 0:
            return bool(d.mean() > 0)
        return bool(d.mean() / se > student.ppf(1 - ALPHA, len(d) - 1))

    def leader(self) -> int:
        """The survivor with the lowest mean on the race's folds (ties: the better search mean, listed first)."""
        return min(self.survivors, key=lambda t: (float(np.mean(self.values[t])) if self.values[t] else 0.0,
                                                  self.top.index(t)))

    @property
    def winner(self) -> int | None:
        """The best on its race resamples (the best by search mean when no round was run)."""
        if not self.survivors:
            return None
        if not self.rounds:
            return self.survivors[0]
        return self.leader()


def race_budget(budget: float, trials: int, top: int) -> int:
    """Evaluations a race may spend: ``budget`` (a share) of the study's trials, but at least two rounds
    of ``top`` (fewer are no race)."""
    return max(int(math.ceil(budget * trials)), 2 * top)
