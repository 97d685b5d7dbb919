"""How well an attack separates members from non-members: ROC AUC and advantage.

Scores follow one convention everywhere: a higher score means "more likely a member"
(the threshold attack scores a sample by minus its loss). Pure numpy, float64.
"""

from __future__ import annotations

import numpy as np


def roc_auc(members: np.ndarray, nonmembers: np.ndarray) -> float:
    """Area under the ROC curve, ties counted as one half (Mann-Whitney U / (n1 n2)).

    Parameters
    ----------
    members, nonmembers : numpy.ndarray
        1-D attack scores of the two sets (higher: more likely a member).

    Returns
    -------
    float
        P(member score > non-member score) + P(equal) / 2; 0.5 is chance.
    """
    a = np.asarray(members, dtype=np.float64).ravel()
    b = np.asarray(nonmembers, dtype=np.float64).ravel()
    n1, n2 = len(a), len(b)
    if n1 == 0 or n2 == 0:
        raise ValueError("roc_auc needs at least one member and one non-member score")
    both = np.concatenate([a, b])
    # Average ranks (1-based) over ties: the rank-sum form of U is exact with ties.
    values, inverse, counts = np.unique(both, return_inverse=True, return_counts=True)
    last = np.cumsum(counts)
    average = last - (counts - 1) / 2.0
    rank_sum = float(average[inverse[:n1]].sum())
    return (rank_sum - n1 * (n1 + 1) / 2.0) / (n1 * n2)


def best_advantage(members: np.ndarray, nonmembers: np.ndarray) -> tuple[float, float]:
    """The attacker's best advantage over all thresholds, and its balanced accuracy.

    A threshold ``t`` calls a sample a member when its score is ``>= t``. The advantage
    is ``max_t TPR(t) - FPR(t)`` (Yeom et al.), 0 for the trivial thresholds, so it is
    never negative; the balanced accuracy is ``(1 + advantage) / 2``. The threshold is
    chosen on the evaluated sets themselves: an upper bound on what a threshold picked
    without them achieves.

    Returns
    -------
    advantage, balanced_accuracy : float
    """
    a = np.asarray(members, dtype=np.float64).ravel()
    b = np.asarray(nonmembers, dtype=np.float64).ravel()
    if len(a) == 0 or len(b) == 0:
        raise ValueError("best_advantage needs at least one member and one non-member score")
    thresholds = np.unique(np.concatenate([a, b]))
    # Counts of scores >= t for every candidate t, from sorted arrays.
    tpr = (len(a) - np.searchsorted(np.sort(a), thresholds, side="left")) / len(a)
    fpr = (len(b) - np.searchsorted(np.sort(b), thresholds, side="left")) / len(b)
    advantage = max(float(np.max(tpr - fpr)), 0.0)
    return advantage, (1.0 + advantage) / 2.0


def auc_null_std(n_members: int, n_nonmembers: int) -> float:
    """Standard deviation of the AUC of scores that carry no membership signal.

    Under the null hypothesis (both sets from one continuous distribution) the
    Mann-Whitney U has variance ``n1 n2 (n1 + n2 + 1) / 12``; divided by ``n1 n2`` this
    is the AUC's. Tests and readers judge "within noise of 0.5" with a multiple of it.
    """
    n1, n2 = int(n_members), int(n_nonmembers)
    return float(np.sqrt((n1 + n2 + 1) / (12.0 * n1 * n2)))
