"""Per-layer norm penalty: ``lam * sum_l ||w_l||_2`` and its closed-form gradient.

FedDIP (docs/methods.md, FedDIP) adds the non-squared L2 (Frobenius) norm of every prunable
tensor to the local loss. Its gradient is ``lam * w_l / ||w_l||`` per tensor; at
``w_l = 0`` the norm has no gradient and we add nothing (the subgradient 0, which keeps a
fully pruned layer at zero instead of producing NaN).

The gradient is added to the flat gradient in place, one small operation per tensor and
no host synchronisation (the coefficients stay on the device), so it costs a few vector
operations per step and gives the same bits on every device and rank.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch

from ..errors import InputError
from .prunable import tensors_in

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = ["NormPenalty", "layer_slices", "norm_penalty", "norm_penalty_grad_"]


def layer_slices(layout: Sequence[TensorInfo], prunable: torch.Tensor) -> tuple[slice, ...]:
    """The flat slices of the tensors in the prunable set, one per penalised layer.

    Raises
    ------
    InputError
        If a tensor is only partly prunable: the penalty is defined per whole tensor.
    """
    out = []
    for info, positions in tensors_in(layout, prunable):
        if positions.numel() != info.numel:
            raise InputError(f"norm penalty: tensor {info.name!r} is only partly prunable")
        out.append(info.slice)
    return tuple(out)


def norm_penalty(params: torch.Tensor, slices: Sequence[slice], lam: float) -> torch.Tensor:
    """``lam * sum_l ||params[slice_l]||_2`` (for tests and logging; training uses the gradient)."""
    if not slices:
        return params.new_zeros(())
    return lam * torch.stack([torch.linalg.vector_norm(params[s]) for s in slices]).sum()


def norm_penalty_grad_(
    grad: torch.Tensor, params: torch.Tensor, slices: Sequence[slice], lam: float
) -> None:
    """Add ``lam * w_l / ||w_l||`` to ``grad`` for every slice ``l`` in place (0 if ``w_l = 0``).

    Parameters
    ----------
    grad : torch.Tensor
        Flat gradient to add to (same length and device as ``params``).
    params : torch.Tensor
        Flat weights at which the gradient is taken.
    slices : sequence of slice
        The penalised tensors (`layer_slices`).
    lam : float
        Coefficient; 0 adds nothing.
    """
    if lam == 0 or not slices:
        return
    norms = torch.stack([torch.linalg.vector_norm(params[s]) for s in slices])
    # lam / ||w_l||, and 0 for an all-zero layer (no NaN from 0 / 0).
    scale = torch.where(norms > 0, lam / norms.clamp_min(torch.finfo(norms.dtype).tiny), 0.0)
    for i, s in enumerate(slices):
        grad[s].addcmul_(params[s], scale[i])


@dataclass(frozen=True)
class NormPenalty:
    """FedDIP's ``lam * sum_l ||w_l||_2`` as a local loss term (its closed-form gradient).

    Attributes
    ----------
    slices : tuple of slice
        The penalised tensors (`layer_slices`).
    lam : float
        The round's coefficient.
    """

    slices: tuple[slice, ...]
    lam: float

    def add_grad_(self, params: torch.Tensor, grad: torch.Tensor, anchor: torch.Tensor) -> None:
        """Add the gradient at ``params`` (the weights the forward pass saw) to ``grad``."""
        norm_penalty_grad_(grad, params, self.slices, self.lam)
