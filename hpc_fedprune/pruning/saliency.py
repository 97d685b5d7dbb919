"""Pruning at initialisation from one gradient: SNIP's connection sensitivity.

SNIP (Lee et al., ICLR 2019) scores every connection by ``|dL/dm|`` for a multiplicative
mask ``m`` at ``m = 1``, which is ``|g * w|`` (``g`` the loss gradient at the weights ``w``),
and keeps the highest-scoring ``1 - s`` of the prunable set (docs/methods.md, SNIP).
"""

from __future__ import annotations

import torch

from .magnitude import global_score_mask

__all__ = ["snip_mask", "snip_scores"]


def snip_scores(weights: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """Connection sensitivity ``|g * w|`` of every entry of the flat model."""
    if weights.shape != grad.shape:
        raise ValueError(f"weights {tuple(weights.shape)} and grad {tuple(grad.shape)} differ")
    return (grad * weights).abs()


def snip_mask(
    weights: torch.Tensor, grad: torch.Tensor, prunable: torch.Tensor, sparsity: float
) -> torch.Tensor:
    """SNIP's one-shot mask: prune the ``floor(s * N)`` lowest ``|g * w|`` of the prunable set.

    Parameters
    ----------
    weights : torch.Tensor
        Flat initial weights.
    grad : torch.Tensor
        Flat loss gradient at ``weights`` (zero on buffers).
    prunable : torch.Tensor
        Bool vector of the prunable set.
    sparsity : float
        Fraction of the prunable set to prune, in [0, 1].

    Returns
    -------
    torch.Tensor
        Bool mask, True = kept, True outside ``prunable``; ties as in `global_score_mask`.
    """
    return global_score_mask(snip_scores(weights, grad), prunable, sparsity)
