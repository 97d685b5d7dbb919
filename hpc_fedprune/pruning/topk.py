"""Top-k sparsification with error feedback (and DGC momentum correction), as pure functions.

One client step (`topk_step`), over flat float32 vectors:

    u = m * u + update                 momentum correction (only when m > 0)
    v = residual + (u or update)       the accumulated, not yet sent, update
    S = the k largest |v|              ties: the lower flat index first
    sent = wire(v on S), 0 elsewhere   rounded to the wire precision before anything else
    residual = v - sent                exactly the unsent mass (the rounding error on S)
    u[S] = 0                           momentum factor masking (Lin et al., DGC)

``residual + sent == v`` holds exactly in float32: off S the residual is v itself and on S
it is v minus a rounding of v, which float32 represents exactly (the wire formats are
float32 values with fewer mantissa bits). Warm-up (DGC): the density in round t <= W is
``max(target, 0.25 ** t)`` (sparsity 75%, 93.75%, 98.4%, ... until the target).
"""

from __future__ import annotations

import math

import torch

from ..comm.wire import round_to_wire_
from .magnitude import lowest_k

__all__ = ["keep_count", "largest_k", "topk_step", "warmup_density"]


def keep_count(n: int, density: float) -> int:
    """Entries sent at ``density`` of ``n``: ``n - floor((1 - density) n)``, at least 1.

    The complement of the pruning count rule, so that density ``d`` and sparsity ``1 - d``
    select the same number of entries.
    """
    return max(1, n - math.floor((1.0 - density) * n))


def warmup_density(round_index: int, target: float, warmup_rounds: int) -> float:
    """DGC's exponential warm-up: ``max(target, 0.25 ** round)`` in the first rounds."""
    if round_index <= warmup_rounds:
        return max(target, 0.25**round_index)
    return target


def largest_k(values: torch.Tensor, k: int) -> torch.Tensor:
    """Bool vector of the ``k`` largest ``|values|`` (ties: the lower flat index first)."""
    return lowest_k(-values.abs(), k)


def topk_step(
    update: torch.Tensor,
    residual: torch.Tensor | None,
    momentum: torch.Tensor | None,
    k: int,
    *,
    beta: float = 0.0,
    value_dtype: str = "float32",
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None, torch.Tensor | None]:
    """One client's Top-k message and its new error-feedback state.

    Parameters
    ----------
    update : torch.Tensor
        The client's float32 update (trained minus downloaded weights).
    residual : torch.Tensor or None
        Unsent mass from earlier participations (None: no error feedback).
    momentum : torch.Tensor or None
        DGC momentum buffer ``u`` (used when ``beta > 0``; None: zeros).
    k : int
        Entries to send.
    beta : float
        Momentum correction coefficient (0: off).
    value_dtype : str
        Wire precision of the sent values (float32, float16, bfloat16).

    Returns
    -------
    sent : torch.Tensor
        float32, dense layout: the wire values on the support, zero elsewhere.
    support : torch.Tensor
        Bool, exactly ``k`` True entries.
    residual : torch.Tensor or None
        New residual (None without error feedback).
    momentum : torch.Tensor or None
        New momentum buffer (None when ``beta`` is 0).
    """
    if beta > 0:
        momentum = update.clone() if momentum is None else momentum * beta + update
        accumulated = momentum.clone()
    else:
        momentum, accumulated = None, update.clone()
    if residual is not None:
        accumulated += residual
    support = largest_k(accumulated, k)
    sent = round_to_wire_(
        torch.where(support, accumulated, torch.zeros_like(accumulated)), value_dtype
    )
    new_residual = accumulated - sent if residual is not None else None
    if momentum is not None:
        momentum.masked_fill_(support, 0.0)
    return sent, support, new_residual, momentum
