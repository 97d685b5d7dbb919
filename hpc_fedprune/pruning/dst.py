"""FedDST's arithmetic (docs/methods.md, FedDST) as pure functions over flat vectors.

- `drop_and_regrow`: a client's readjustment. In every tensor with prunable entries it
  drops the ``k`` active weights of smallest magnitude and regrows the ``k`` inactive
  ones (inactive before the drop) with the largest gradient magnitude, with
  ``k = min(floor(fraction * active), inactive)``: the tensor keeps its count of
  active weights, so its ERK density, exactly.
- `erk_reprune`: layer-wise magnitude pruning of the server's average (each weight
  averaged over the clients that hold it: ``nnz_average`` in
  `hpc_fedprune.algorithms.merge`) back to the ERK counts; entries outside ``eligible``
  (held by too few clients) go first.

Ties: with a keyed generator (``rng``) equal magnitudes and equal gradient magnitudes are
broken by a random choice among the tied entries, so no decision depends on where a
weight sits in the flat model; without one, the lower flat index goes first.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .magnitude import layerwise_magnitude_mask, lowest_k

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = ["drop_and_regrow", "erk_reprune", "readjust_count"]


def readjust_count(active: int, inactive: int, fraction: float) -> int:
    """Weights a tensor drops (and regrows): ``min(floor(fraction * active), inactive)``."""
    return max(0, min(math.floor(fraction * active), inactive))


def drop_and_regrow(
    weights: torch.Tensor,
    grad: torch.Tensor,
    mask: torch.Tensor,
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    fraction: float,
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """A client's new mask after one FedDST readjustment (RigL's drop and grow).

    Parameters
    ----------
    weights : torch.Tensor
        The client's trained flat weights (zero off ``mask``).
    grad : torch.Tensor
        The flat loss gradient at ``weights``.
    mask : torch.Tensor
        The mask the client trained under (bool, True outside ``prunable``).
    layout : sequence of TensorInfo
        The flat model's layout.
    prunable : torch.Tensor
        Bool vector of the prunable set.
    fraction : float
        Fraction of each tensor's active weights to drop, in [0, 1].
    rng : numpy.random.Generator, optional
        Breaks ties at random (keyed by the caller) instead of by index.

    Returns
    -------
    torch.Tensor
        New bool mask with the same number of active entries in every tensor.
    """
    new = mask.clone()
    mags, gmags = weights.abs(), grad.abs()
    for info in layout:
        cand = prunable[info.slice]
        if not bool(cand.any()):
            continue
        active = cand & mask[info.slice]
        inactive = cand & ~mask[info.slice]
        k = readjust_count(int(active.sum()), int(inactive.sum()), fraction)
        if k == 0:
            continue
        seg = new[info.slice]
        drop = torch.zeros_like(active)
        drop[active] = lowest_k(mags[info.slice][active], k, rng)
        grow = torch.zeros_like(inactive)
        grow[inactive] = lowest_k(-gmags[info.slice][inactive], k, rng)
        seg[drop] = False
        seg[grow] = True
    return new


def erk_reprune(
    values: torch.Tensor,
    eligible: torch.Tensor,
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    counts: Mapping[str, int],
    rng: np.random.Generator | None = None,
) -> torch.Tensor:
    """Keep exactly ``counts[tensor]`` prunable entries per tensor, largest ``|values|`` first.

    Entries outside ``eligible`` are pruned before any eligible one (they are kept only
    when a tensor has fewer eligible entries than its count). ``rng``: random choice among
    equal magnitudes instead of the lower index.
    """
    return layerwise_magnitude_mask(
        values, layout, prunable, keep=counts, current_mask=eligible | ~prunable, rng=rng
    )
