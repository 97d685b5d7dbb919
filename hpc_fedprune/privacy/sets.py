"""Who is a member: the held-out pool, the evaluated sets and the shadow models' data.

All sets are index arrays into the training set, drawn from ``Stream.PRIVACY`` keyed by
the seed alone, so every rank and every later ``privacy`` command rebuilds the same ones.

* ``split_holdout`` takes a seeded slice of the training set away from partitioning:
  those samples belong to no client and are never trained on by the federation.
* ``membership_sets`` draws the evaluated members (from the clients' training samples)
  and as many non-members (from the held-out pool); the rest of the pool is the
  shadow models' data, disjoint from both.
* ``shadow_split`` gives each shadow model its own training ("in") and unseen ("out")
  halves of that rest.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from ..errors import InputError
from ..rng import Stream, numpy_rng

# Second key of the PRIVACY stream, one per kind of draw.
_KEY_HOLDOUT = 1
_KEY_MEMBERS = 2
_KEY_NONMEMBERS = 3
_KEY_SHADOW = 4


def split_holdout(n_train: int, fraction: float, *, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Split the training set into the part the clients share and a held-out pool.

    Parameters
    ----------
    n_train : int
        Training samples.
    fraction : float
        Share held out, in (0, 1); ``round(fraction * n_train)`` samples, at least one
        and leaving at least one.
    seed : int

    Returns
    -------
    kept, holdout : numpy.ndarray
        Sorted int64 indices.
    """
    if n_train < 2:
        raise InputError(
            f"privacy: {n_train} training samples cannot be split into members and non-members"
        )
    n_hold = min(max(int(np.floor(fraction * n_train + 0.5)), 1), n_train - 1)
    order = numpy_rng(seed, Stream.PRIVACY, _KEY_HOLDOUT).permutation(n_train)
    return np.sort(order[n_hold:]).astype(np.int64), np.sort(order[:n_hold]).astype(np.int64)


@dataclass(frozen=True)
class MembershipSets:
    """The evaluated sets and the shadow data (training-set indices, sorted).

    Attributes
    ----------
    members : numpy.ndarray
        Samples of the clients' training data.
    nonmembers : numpy.ndarray
        Held-out samples, as many as members.
    shadow_pool : numpy.ndarray
        The remaining held-out samples, for the shadow models.
    """

    members: np.ndarray
    nonmembers: np.ndarray
    shadow_pool: np.ndarray


def membership_sets(
    train_parts: Sequence[np.ndarray],
    holdout: np.ndarray,
    *,
    cap: int,
    shadow: bool,
    seed: int,
) -> MembershipSets:
    """Balanced member and non-member sets of ``min(cap // 2, ...)`` samples each.

    With ``shadow`` at most half of the held-out pool goes to non-members, so the shadow
    models keep the other half.
    """
    pool = np.unique(np.concatenate([np.asarray(p, dtype=np.int64) for p in train_parts]))
    holdout = np.asarray(holdout, dtype=np.int64)
    room = len(holdout) // 2 if shadow else len(holdout)
    n = min(cap // 2, len(pool), room)
    if n < 1:
        raise InputError(
            f"privacy: too few samples to attack ({len(pool)} client samples, "
            f"{len(holdout)} held out); raise privacy.holdout or privacy.samples"
        )
    members = pool[numpy_rng(seed, Stream.PRIVACY, _KEY_MEMBERS).permutation(len(pool))[:n]]
    order = numpy_rng(seed, Stream.PRIVACY, _KEY_NONMEMBERS).permutation(len(holdout))
    return MembershipSets(
        np.sort(members), np.sort(holdout[order[:n]]), np.sort(holdout[order[n:]])
    )


def shadow_split(
    pool: np.ndarray, size: int, k: int, *, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Shadow model ``k``'s training set and an unseen set of the same size, from ``pool``.

    ``size`` is capped at half the pool. Different shadow models draw independently, so
    their sets may overlap, as in Shokri et al.
    """
    size = min(int(size), len(pool) // 2)
    if size < 1:
        raise InputError(
            f"privacy: {len(pool)} held-out samples left for shadow models; "
            "raise privacy.holdout or set privacy.shadow_models=0"
        )
    order = numpy_rng(seed, Stream.PRIVACY, _KEY_SHADOW, k).permutation(len(pool))
    return np.sort(pool[order[:size]]), np.sort(pool[order[size : 2 * size]])
