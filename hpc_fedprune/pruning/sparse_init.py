"""Sparse-aware initialisation: keep each layer's output variance under a random mask.

He-normal weights on the fan-in (``model.init: sparse_kaiming``) give every unit of a dense
layer an output variance independent of its fan-in, ``Var(w) = 2 / fan_in``. Under a mask
that keeps a fraction ``d_l`` of layer ``l``'s weights, a unit sums ``d_l * fan_in`` inputs
on average, so its output variance drops by ``d_l``: at 90% sparsity a signal shrinks by
about ``sqrt(10)`` per layer and a deep enough net starts with outputs that carry nothing.
Multiplying the kept weights by ``1 / sqrt(d_l)`` gives back ``Var = 2 / (d_l fan_in)``
(the layer-density form of the sparse init of Evci et al., "Gradient Flow in Sparse Neural
Networks and How Lottery Tickets Win", AAAI 2022). Biases are zero (``sparse_kaiming``),
so nothing else sets the scale.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = ["rescale_kept_"]

_WEIGHT_KINDS = ("conv_weight", "linear_weight")


def rescale_kept_(weights: torch.Tensor, mask: torch.Tensor, layout: Sequence[TensorInfo]) -> None:
    """Multiply every conv/linear weight tensor's kept entries by ``1 / sqrt(density)``.

    Parameters
    ----------
    weights : torch.Tensor
        Flat weights, changed in place (pruned entries are left for the mask to zero).
    mask : torch.Tensor
        The bool mask over the flat model (True = kept).
    layout : sequence of TensorInfo
        The flat model's layout. A tensor's density is its kept fraction over the whole
        tensor; dense tensors and empty ones are left alone.
    """
    for info in layout:
        if info.kind not in _WEIGHT_KINDS:
            continue
        kept = mask[info.slice]
        count = int(kept.sum())
        if 0 < count < info.numel:
            weights[info.slice][kept] *= math.sqrt(info.numel / count)
