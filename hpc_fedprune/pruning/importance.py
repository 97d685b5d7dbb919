"""PruneFL's selection of kept weights (docs/methods.md, PruneFL) as pure functions.

PruneFL keeps the weights whose aggregated squared gradient is largest per unit of the
time they cost. Here a weight's score is ``G_j / t_j``: ``G_j`` the (sample-weighted)
sum over clients of its squared loss gradient, ``t_j`` the per-parameter time of its
tensor (1 everywhere without a layer-time model). The mask keeps the ``N - floor(s N)``
prunable entries with the largest score, chosen afresh from every entry, so a weight
pruned earlier comes back when its gradient is large.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from .magnitude import global_score_mask
from .prunable import tensors_in

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = ["importance_mask", "layer_time_vector"]


def layer_time_vector(
    layout: Sequence[TensorInfo], prunable: torch.Tensor, times: Sequence[float]
) -> torch.Tensor | None:
    """Per-entry time from one per-parameter time per prunable tensor (flat order).

    Returns None for an empty ``times`` (no time weighting).

    Raises
    ------
    InputError
        A count that differs from the number of prunable tensors, or a time <= 0.
    """
    if not times:
        return None
    pairs = tensors_in(layout, prunable)
    if len(times) != len(pairs):
        names = ", ".join(info.name for info, _ in pairs)
        raise InputError(
            f"algorithm.prunefl.layer_times: {len(times)} times for {len(pairs)} prunable "
            f"tensors ({names})"
        )
    if any(float(t) <= 0 for t in times):
        raise InputError(f"algorithm.prunefl.layer_times must be > 0, got {list(times)}")
    out = torch.ones(prunable.numel(), dtype=torch.float64, device=prunable.device)
    for (_, positions), t in zip(pairs, times, strict=True):
        out[positions] = float(t)
    return out


def importance_mask(
    sq_grad: torch.Tensor,
    prunable: torch.Tensor,
    sparsity: float,
    time: torch.Tensor | None = None,
) -> torch.Tensor:
    """Keep the prunable entries with the largest ``sq_grad / time``, at ``sparsity``.

    Parameters
    ----------
    sq_grad : torch.Tensor
        Aggregated squared gradients over the flat model.
    prunable : torch.Tensor
        Bool vector of the prunable set.
    sparsity : float
        Fraction of the prunable set to prune.
    time : torch.Tensor, optional
        Per-entry time (`layer_time_vector`); None: every entry costs the same.

    Returns
    -------
    torch.Tensor
        Bool mask, True = kept, True outside ``prunable``; independent of the previous
        mask, so pruned entries can return.
    """
    score = sq_grad.double() if time is None else sq_grad.double() / time
    return global_score_mask(score, prunable, sparsity)
