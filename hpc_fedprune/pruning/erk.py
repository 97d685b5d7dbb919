"""Random masks: uniform over the prunable set, and ERK-allocated per tensor.

ERK (Erdos-Renyi-Kernel; Evci et al., "Rigging the Lottery", 2020, as used by FedDIP's
round-0 masks and FedDST): tensor ``l`` with shape ``(d_1, ..., d_k)`` gets density
``eps * (sum(d) / prod(d)) ** power_scale``, with one ``eps`` chosen so that the kept
entries add up to the target density of the whole prunable set. A tensor whose density
would exceed 1 is made dense and ``eps`` is solved again over the others (repeated until
no density exceeds 1), exactly like RigL's ``sparse_utils.get_sparsities``.

Counts are integers that meet the global target exactly: the prunable set keeps
``N - floor((1 - density) * N)`` entries (the package's count rule); each tensor gets
``floor(density_l * n_l)`` and the few left over go to the tensors with the largest
fractional parts (largest remainder; ties to the earlier tensor). Random positions come
from a numpy generator (e.g. ``numpy_rng(seed, Stream.MASK, round, client)``), so a mask
does not depend on the device.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import torch

from .masks import check_fraction, kept_count, pruned_count
from .prunable import tensors_in

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = ["erk_counts", "erk_densities", "erk_random_mask", "random_mask"]


def _erk_solve(
    sizes: list[int], raw: list[float], density: float
) -> tuple[list[float], float, set[int]]:
    """Per-tensor densities, the final eps and the set of dense tensors."""
    total = sum(sizes)
    dense: set[int] = set()
    eps = 0.0
    while True:
        rest = [i for i in range(len(sizes)) if i not in dense]
        if not rest:
            break
        budget = density * total - sum(sizes[i] for i in dense)
        divisor = sum(raw[i] * sizes[i] for i in rest)
        eps = budget / divisor if divisor > 0 else 0.0
        top = max(raw[i] for i in rest)
        if eps * top <= 1.0:
            break
        # The densest tensors would exceed 1: make them dense; that raises eps for the
        # rest (their budget share was above their size), so repeat.
        dense.update(i for i in rest if raw[i] == top)
    dens = [1.0 if i in dense else min(1.0, max(0.0, eps * raw[i])) for i in range(len(sizes))]
    return dens, eps, dense


def _raw_scores(infos: Sequence[TensorInfo], power_scale: float) -> list[float]:
    return [(sum(i.shape) / math.prod(i.shape)) ** power_scale for i in infos]


def erk_densities(
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    density: float,
    *,
    power_scale: float = 1.0,
) -> dict[str, float]:
    """ERK density of every tensor with prunable entries.

    Parameters
    ----------
    layout : sequence of TensorInfo
        The flat model's layout.
    prunable : torch.Tensor
        Bool vector of the prunable set (a tensor counts with its prunable entries).
    density : float
        Target fraction of the prunable set to keep, in [0, 1].
    power_scale : float
        Exponent of the ERK score (1 = RigL and FedDIP's default; 0 gives uniform density).

    Returns
    -------
    dict of str to float
        Tensor name -> density in [0, 1]; ``sum(d_l * n_l) == density * N`` up to rounding.
    """
    density = check_fraction(density, "density")
    pairs = tensors_in(layout, prunable)
    infos = [info for info, _ in pairs]
    sizes = [pos.numel() for _, pos in pairs]
    dens, _, _ = _erk_solve(sizes, _raw_scores(infos, power_scale), density)
    return {info.name: d for info, d in zip(infos, dens, strict=True)}


def erk_counts(
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    density: float,
    *,
    power_scale: float = 1.0,
) -> dict[str, int]:
    """ERK allocation as integer kept counts that meet the global target exactly.

    Returns
    -------
    dict of str to int
        Tensor name -> number of prunable entries kept; the counts add up to
        ``kept_count(N, density)`` and none exceeds the tensor's prunable size.
    """
    density = check_fraction(density, "density")
    pairs = tensors_in(layout, prunable)
    infos = [info for info, _ in pairs]
    sizes = [pos.numel() for _, pos in pairs]
    dens, _, _ = _erk_solve(sizes, _raw_scores(infos, power_scale), density)
    target = kept_count(sum(sizes), density)
    exact = [d * n for d, n in zip(dens, sizes, strict=True)]
    counts = [min(n, math.floor(x)) for x, n in zip(exact, sizes, strict=True)]
    left = target - sum(counts)
    # Largest remainder first; ties to the earlier tensor. A second pass over everything
    # with room absorbs the (float-noise) case where more is left than there are fractions.
    order = sorted(range(len(sizes)), key=lambda i: (-(exact[i] - math.floor(exact[i])), i))
    while left > 0:
        progressed = False
        for i in order:
            if left == 0:
                break
            if counts[i] < sizes[i]:
                counts[i] += 1
                left -= 1
                progressed = True
        if not progressed:
            break
    while left < 0:  # float noise the other way: take back from the smallest remainders
        for i in reversed(order):
            if left == 0:
                break
            if counts[i] > 0:
                counts[i] -= 1
                left += 1
    return {info.name: c for info, c in zip(infos, counts, strict=True)}


def _as_numpy_positions(positions: torch.Tensor) -> np.ndarray:
    return positions.detach().cpu().numpy()


def random_mask(prunable: torch.Tensor, sparsity: float, rng: np.random.Generator) -> torch.Tensor:
    """Prune exactly ``floor(sparsity * N)`` prunable entries chosen uniformly at random.

    Parameters
    ----------
    prunable : torch.Tensor
        Bool vector of the prunable set.
    sparsity : float
        Fraction to prune, in [0, 1].
    rng : numpy.random.Generator
        E.g. ``numpy_rng(seed, Stream.MASK, round, client)``.

    Returns
    -------
    torch.Tensor
        Bool mask on ``prunable``'s device, True = kept, True outside ``prunable``.
    """
    positions = _as_numpy_positions(prunable.nonzero().squeeze(1))
    k = pruned_count(positions.size, sparsity)
    mask = np.ones(prunable.numel(), dtype=bool)
    mask[positions[rng.choice(positions.size, size=k, replace=False)]] = False
    return torch.from_numpy(mask).to(prunable.device)


def erk_random_mask(
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    density: float,
    rng: np.random.Generator,
    *,
    power_scale: float = 1.0,
) -> torch.Tensor:
    """Random mask with the ERK allocation: tensor ``l`` keeps exactly ``erk_counts[l]``.

    Parameters
    ----------
    layout : sequence of TensorInfo
        The flat model's layout.
    prunable : torch.Tensor
        Bool vector of the prunable set.
    density : float
        Target fraction of the prunable set to keep.
    rng : numpy.random.Generator
        Source of the positions; tensors draw in flat order.
    power_scale : float
        ERK exponent.

    Returns
    -------
    torch.Tensor
        Bool mask on ``prunable``'s device, True = kept, True outside ``prunable``.
    """
    counts = erk_counts(layout, prunable, density, power_scale=power_scale)
    mask = np.ones(prunable.numel(), dtype=bool)
    for info, positions in tensors_in(layout, prunable):
        pos = _as_numpy_positions(positions)
        drop = pos.size - counts[info.name]
        mask[pos[rng.choice(pos.size, size=drop, replace=False)]] = False
    return torch.from_numpy(mask).to(prunable.device)
