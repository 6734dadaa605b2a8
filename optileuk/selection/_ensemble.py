"""Ensemble selection (Caruana, Niculescu-Mizil, Crew and Ksikes 2004; auto-sklearn's ensembles): from
a library of the best trials, add -- with replacement -- the one whose vote makes the ensemble's
out-of-fold balanced accuracy highest, ``size`` times; members weigh as often as they were drawn.

Members vote with their predicted class (a trial's classifier may be an SVM, a forest or a network:
votes are what they all give); a tie goes to the class of the member drawn first. ``optileuk train``
fits every member, and the bundle applies their weighted vote (:func:`vote`).
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from optileuk.folds import vote


def _balanced(y: np.ndarray, pred: np.ndarray, n_classes: int) -> float:
    from optileuk.metrics import scores

    ok = pred >= 0
    return scores(y[ok], pred[ok], n_classes)["balanced_accuracy"] if ok.any() else 0.0


def oof_score(y: np.ndarray, members: Sequence[np.ndarray], weights: Sequence[float], n_classes: int) -> float:
    """Mean over repeats of the balanced accuracy of the weighted vote (``members``: (repeats, n) each)."""
    repeats = members[0].shape[0]
    return float(np.mean([_balanced(y, vote([m[r] for m in members], weights, n_classes)[0], n_classes)
                          for r in range(repeats)]))


def greedy(y: np.ndarray, library: Sequence[np.ndarray], size: int, n_classes: int) -> tuple[list[int], float]:
    """Caruana's forward selection with replacement: ``size`` draws from ``library`` (out-of-fold
    predictions (repeats, n) per trial, best trial first); returns the draw counts per library entry
    and the ensemble's out-of-fold balanced accuracy. Ties go to a trial not drawn yet (a second equal vote
    changes no prediction, a third may), then to the better-ranked one."""
    counts = [0] * len(library)
    best_score = -1.0
    for _ in range(size):
        scored = []
        for i in range(len(library)):
            trial_counts = counts.copy()
            trial_counts[i] += 1
            chosen = [j for j, c in enumerate(trial_counts) if c]
            order = sorted(chosen, key=lambda j: (-trial_counts[j], j))
            new = counts[i] == 0  # on a tie a member not drawn yet: two equal votes change nothing, three can
            scored.append((oof_score(y, [library[j] for j in order], [trial_counts[j] for j in order], n_classes),
                           new, -i))
        score, _, neg_i = max(scored)
        counts[-neg_i] += 1
        best_score = score
    return counts, best_score
