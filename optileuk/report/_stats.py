"""Statistics of a comparison: ranks per seed, Friedman test, pairwise Wilcoxon tests, time to target.

The runs of one seed form a block (same data split, same budget), so the tests are the paired,
non-parametric ones of the optimizer-benchmarking literature: a Friedman test over all optimizers
and Wilcoxon signed-rank tests between pairs, Holm-corrected.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from itertools import combinations

import numpy as np
from scipy import stats

from optileuk.report._collect import Group


@dataclass
class Row:
    label: str
    runs: int
    median: float
    q25: float
    q75: float
    best: float
    mean_rank: float | None
    reached: int
    evals_to_target: float | None  # median over the runs that reached it
    seconds_to_target: float | None
    seconds: float  # median wall time of a whole run


@dataclass
class Pair:
    a: str
    b: str
    better: str | None  # the one with the better median of paired differences
    p: float | None
    p_holm: float | None
    note: str = ""


@dataclass
class Ranking:
    rows: list[Row]
    target: float
    blocks: list[int]  # the seeds every optimizer has
    friedman: tuple[float, float] | None = None  # (statistic, p)
    friedman_note: str = ""
    pairs: list[Pair] = field(default_factory=list)
    min_p_note: str = ""


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (family-wise error), in the input order."""
    m = len(pvalues)
    order = np.argsort(pvalues)
    adjusted = np.empty(m)
    running = 0.0
    for k, i in enumerate(order):
        running = max(running, min(1.0, (m - k) * pvalues[i]))
        adjusted[i] = running
    return adjusted.tolist()


def hit(run_best: np.ndarray, target: float, minimize: bool) -> int | None:
    """Index of the first evaluation whose best-so-far reaches ``target`` (None if never)."""
    ok = run_best <= target if minimize else run_best >= target
    ok &= ~np.isnan(run_best)
    return int(np.argmax(ok)) if ok.any() else None


def default_target(group: Group) -> float:
    """The median final best over every run: about half the runs reach it."""
    return float(np.nanmedian([r.final_best for r in group.runs]))


def rank(group: Group, target: float | None = None) -> Ranking:
    labels = group.labels
    target = default_target(group) if target is None else float(target)
    blocks = [s for s in group.seeds if all(any(r.seed == s for r in group.of(lab)) for lab in labels)]
    table = np.array([[next(r.final_best for r in group.of(lab) if r.seed == s) for lab in labels] for s in blocks]) \
        if blocks else np.empty((0, len(labels)))
    sign = 1.0 if group.minimize else -1.0
    ranks = np.array([stats.rankdata(sign * row) for row in table]) if len(table) else None

    rows = []
    for j, lab in enumerate(labels):
        runs = group.of(lab)
        finals = np.array([r.final_best for r in runs])
        hits = [(hit(r.best_so_far(), target, group.minimize), r) for r in runs]
        reached = [(i, r) for i, r in hits if i is not None]
        rows.append(Row(
            lab, len(runs), float(np.nanmedian(finals)), float(np.nanpercentile(finals, 25)),
            float(np.nanpercentile(finals, 75)), float(np.nanmin(finals) if group.minimize else np.nanmax(finals)),
            float(ranks[:, j].mean()) if ranks is not None and len(ranks) else None, len(reached),
            float(np.median([i + 1 for i, _ in reached])) if reached else None,
            float(np.median([r.seconds[i] for i, r in reached])) if reached else None,
            float(np.median([np.nanmax(r.seconds) for r in runs]))))
    out = Ranking(rows, target, blocks)

    k, n = len(labels), len(blocks)
    if k < 2:
        out.friedman_note = "one optimizer: nothing to rank"
        return out
    if n < 2:
        out.friedman_note = "needs at least two seeds that every optimizer has run"
    elif k < 3:
        out.friedman_note = "the Friedman test needs three or more optimizers (see the pairwise test)"
    elif np.allclose(table, table[0, 0]):
        out.friedman_note = "every run ended with the same value: no differences to test"
    else:
        res = stats.friedmanchisquare(*table.T)
        out.friedman = (float(res.statistic), float(res.pvalue))
    if n >= 1:
        out.min_p_note = (f"with {n} paired seeds the smallest two-sided Wilcoxon p-value possible is "
                          f"{2 / 2 ** n:.3g}" if n < 10 else "")
    raw = []
    for a, b in combinations(range(k), 2):
        d = table[:, a] - table[:, b]
        pair = Pair(labels[a], labels[b], None, None, None)
        if n < 2:
            pair.note = "too few seeds"
        elif np.all(d == 0):
            pair.note = "identical results"
        else:
            pair.p = float(stats.wilcoxon(table[:, a], table[:, b]).pvalue)
            med = np.median(d)
            pair.better = None if med == 0 else (labels[a] if (med < 0) == group.minimize else labels[b])
        raw.append(pair)
    tested = [p for p in raw if p.p is not None]
    for p, adj in zip(tested, holm([p.p for p in tested])):
        p.p_holm = adj
    out.pairs = raw
    return out
