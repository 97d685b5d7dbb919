"""Top-k masks from scores: global and layer-wise magnitude pruning.

Count rule (see `pruned_count`): pruning a fraction ``s`` of ``N`` prunable entries removes
exactly ``floor(s * N)`` of them, the ones with the lowest score; nothing else changes.

Ties: among equal scores the entry with the lower flat index is pruned first, so the
result is deterministic on every device and independent of the sort algorithm. The
threshold is found with a linear-time selection (`kth_smallest`; ``torch.quantile``
refuses inputs above about 16M elements), then exactly the missing number of tied entries
is taken in index order; or, with a keyed generator (``rng``), drawn at random among the
tied ones, for decisions that must not depend on where a weight sits (FedDST).

Nesting: with ``current_mask``, entries it already prunes rank below every entry it keeps,
so a non-decreasing sparsity never brings a pruned entry back (FedDIP's and FedSparsify's
code, where pruned weights are exactly zero). If the new sparsity is lower than the
current one, the already-pruned entries with the highest scores come back.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..errors import InputError
from .masks import pruned_count

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = [
    "global_magnitude_mask",
    "global_score_mask",
    "layerwise_magnitude_mask",
    "kth_smallest",
    "lowest_k",
]


def lowest_k(
    scores: torch.Tensor,
    k: int,
    rng: np.random.Generator | None = None,
    prefer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool vector marking the ``k`` lowest entries of 1-D ``scores``.

    Parameters
    ----------
    scores : torch.Tensor
        1-D real scores, no NaN.
    k : int
        How many to mark, clipped to ``[0, len(scores)]``.
    rng : numpy.random.Generator, optional
        Breaks ties at the k-th value by a random choice among the tied entries (keyed by
        the caller) instead of by index.
    prefer : torch.Tensor, optional
        Bool vector: among the tied entries these are taken first (e.g. the ones a mask
        already prunes), then the others.

    Returns
    -------
    torch.Tensor
        Exactly ``k`` True entries: all scores below the k-th smallest value, then the
        lowest-index entries equal to it (or ``rng``'s choice among them).
    """
    n = scores.numel()
    out = torch.zeros(n, dtype=torch.bool, device=scores.device)
    if k <= 0:
        return out
    if k >= n:
        return out.fill_(True)
    if bool(torch.isnan(scores).any()):
        raise ValueError("scores contain NaN (diverged training?)")
    threshold = kth_smallest(scores, k)
    below = scores < threshold
    out |= below
    missing = k - int(below.sum())
    tied = (scores == threshold).nonzero().squeeze(1)
    if prefer is not None and len(tied) > missing:
        first = prefer[tied]
        tied = torch.cat([tied[first], tied[~first]])
    if rng is not None and len(tied) > missing:
        picked = np.sort(rng.choice(len(tied), size=missing, replace=False))
        tied = tied[torch.from_numpy(picked).to(tied.device)]
    out[tied[:missing]] = True
    return out


def kth_smallest(scores: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k``-th smallest entry (1-based) of 1-D ``scores``, as a 0-d tensor.

    On the CPU, numpy's introselect: linear time on any input. ``torch.kthvalue`` on the CPU
    is a plain quickselect that turns quadratic on sorted runs (a descending 300k vector
    with k = n/10 takes seconds, a million elements minutes), and scores can arrive sorted
    in long runs. On a GPU ``torch.kthvalue`` is a radix select without that weakness.
    """
    if scores.device.type != "cpu":
        return torch.kthvalue(scores, k).values
    if scores.dtype in (torch.float16, torch.bfloat16):  # numpy has no bfloat16; exact
        scores = scores.float()
    values = scores.detach().numpy()
    return torch.as_tensor(np.partition(values, k - 1)[k - 1])


def _lowest_in(
    scores: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    rng: np.random.Generator | None = None,
    prefer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Bool vector: the ``k`` lowest-scoring entries among ``candidates``."""
    out = torch.zeros_like(candidates)
    # Boolean gather/scatter: one pass each, no int64 index vectors for 10^7 entries.
    among = None if prefer is None else prefer[candidates]
    out[candidates] = lowest_k(scores[candidates], k, rng, among)
    return out


def _to_prune(
    scores: torch.Tensor,
    candidates: torch.Tensor,
    k: int,
    current: torch.Tensor | None,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Bool vector of the ``k`` candidates to prune; the ones ``current`` prunes go first."""
    if current is None:
        return _lowest_in(scores, candidates, k, rng)
    old = candidates & ~current
    n_old = int(old.sum())
    if k >= n_old:
        return old | _lowest_in(scores, candidates & current, k - n_old, rng)
    return _lowest_in(scores, old, k, rng)


def _check(values: torch.Tensor, prunable: torch.Tensor, current: torch.Tensor | None) -> None:
    if values.dim() != 1 or prunable.shape != values.shape or prunable.dtype != torch.bool:
        raise ValueError(
            "expected 1-D values and a bool prunable vector of the same length, got "
            f"{tuple(values.shape)} and {prunable.dtype} {tuple(prunable.shape)}"
        )
    if current is not None and (current.shape != values.shape or current.dtype != torch.bool):
        raise ValueError("current_mask must be a bool vector as long as the values")


def global_score_mask(
    scores: torch.Tensor,
    prunable: torch.Tensor,
    sparsity: float | None = None,
    *,
    count: int | None = None,
    current_mask: torch.Tensor | None = None,
    prefer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Prune the lowest-scoring ``floor(sparsity * N)`` of the ``N`` prunable entries.

    Parameters
    ----------
    scores : torch.Tensor
        1-D scores over the whole flat model (higher = more important), e.g. |w|, SNIP's
        |g * w|, or AutoFLIP's normalised displacement.
    prunable : torch.Tensor
        Bool vector of the prunable set.
    sparsity : float, optional
        Fraction of the prunable set to prune, in [0, 1].
    count : int, optional
        Instead of ``sparsity``: exactly how many prunable entries to prune.
    current_mask : torch.Tensor, optional
        The mask in force; the entries it prunes are pruned first (see module docstring).
    prefer : torch.Tensor, optional
        Bool vector: among equal scores these are pruned first (before the lower index).

    Returns
    -------
    torch.Tensor
        Bool mask over the flat model, True = kept, always True outside ``prunable``.
    """
    _check(scores, prunable, current_mask)
    if (sparsity is None) == (count is None):
        raise InputError("global_score_mask needs exactly one of sparsity and count=")
    k = pruned_count(int(prunable.sum()), sparsity) if count is None else int(count)
    if prefer is not None:
        if current_mask is not None:
            raise InputError("global_score_mask takes current_mask or prefer, not both")
        return ~_lowest_in(scores, prunable, k, None, prefer)
    return ~_to_prune(scores, prunable, k, current_mask)


def global_magnitude_mask(
    values: torch.Tensor,
    prunable: torch.Tensor,
    sparsity: float | None = None,
    *,
    count: int | None = None,
    current_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Global magnitude pruning: keep the ``N - floor(sparsity * N)`` largest |w|.

    Parameters
    ----------
    values : torch.Tensor
        Flat weights (e.g. the aggregated global model).
    prunable : torch.Tensor
        Bool vector of the prunable set.
    sparsity : float, optional
        Fraction of the prunable set to prune, in [0, 1].
    count : int, optional
        Instead of ``sparsity``: exactly how many prunable entries to prune.
    current_mask : torch.Tensor, optional
        The mask in force; its pruned entries are pruned first (nested masks).

    Returns
    -------
    torch.Tensor
        Bool mask, True = kept, always True outside ``prunable``.
    """
    return global_score_mask(
        values.abs(), prunable, sparsity, count=count, current_mask=current_mask
    )


def layerwise_magnitude_mask(
    values: torch.Tensor,
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    sparsity: float | Mapping[str, float] | None = None,
    *,
    keep: Mapping[str, int] | None = None,
    current_mask: torch.Tensor | None = None,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Magnitude pruning inside each tensor separately.

    Parameters
    ----------
    values : torch.Tensor
        Flat weights.
    layout : sequence of TensorInfo
        The flat model's layout.
    prunable : torch.Tensor
        Bool vector of the prunable set; each tensor prunes among its own prunable entries.
    sparsity : float or mapping of str to float, optional
        One sparsity for every tensor, or one per tensor name (every tensor with prunable
        entries must be named). Each tensor with ``n`` prunable entries loses
        ``floor(s * n)`` of them.
    keep : mapping of str to int, optional
        Instead of ``sparsity``: exactly how many prunable entries each tensor keeps, e.g.
        `erk_counts` (FedDST's re-pruning to the ERK allocation).
    current_mask : torch.Tensor, optional
        The mask in force; its pruned entries are pruned first within each tensor.
    rng : numpy.random.Generator, optional
        Random choice among equal magnitudes (tensors draw in flat order) instead of the
        lower index.

    Returns
    -------
    torch.Tensor
        Bool mask, True = kept, always True outside ``prunable``.

    Raises
    ------
    InputError
        Both or neither of ``sparsity`` and ``keep``; a tensor missing from a mapping; a
        count outside ``[0, n]``.
    """
    _check(values, prunable, current_mask)
    if (sparsity is None) == (keep is None):
        raise InputError("layerwise_magnitude_mask needs exactly one of sparsity= and keep=")
    mags = values.abs()
    mask = torch.ones_like(prunable)
    for info in layout:
        candidates = prunable[info.slice]
        n = int(candidates.sum())
        if n == 0:
            continue
        if keep is not None:
            if info.name not in keep:
                raise InputError(f"keep= has no count for tensor {info.name!r}")
            kept = int(keep[info.name])
            if not 0 <= kept <= n:
                raise InputError(f"keep[{info.name!r}] = {kept} is outside [0, {n}]")
            k = n - kept
        elif isinstance(sparsity, Mapping):
            if info.name not in sparsity:
                raise InputError(f"sparsity= has no value for tensor {info.name!r}")
            k = pruned_count(n, sparsity[info.name])
        else:
            k = pruned_count(n, sparsity)
        current = None if current_mask is None else current_mask[info.slice]
        mask[info.slice] = ~_to_prune(mags[info.slice], candidates, k, current, rng)
    return mask
