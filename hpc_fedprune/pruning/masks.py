"""Masks as data: one bool vector over the whole flat model, True = kept.

Every mask in the simulator is a 1-D ``torch.bool`` tensor as long as the flat model
(`hpc_fedprune.models.FlatModel.flat`). Positions outside the prunable set are always True,
so a mask can be applied to the whole flat vector (weights, deltas, gradients) with one
vector operation, and two masks combine with ``&`` and ``|``.

The count rule used by every pruning function in this package lives here: pruning a
fraction ``s`` of ``N`` candidates removes exactly `pruned_count` ``(N, s) = floor(s * N)``
entries (computed in float64 with an allowance of 1e-6, so that 0.29 * 100 counts as 29
although the float product is 28.999...), and keeps ``N - floor(s * N)``.
"""

from __future__ import annotations

import math
import weakref
from collections import OrderedDict

import numpy as np
import torch

from ..errors import InputError

__all__ = [
    "apply_mask_",
    "check_fraction",
    "dense_mask",
    "density",
    "float_mask",
    "kept_count",
    "nonzero_mask",
    "pack_mask",
    "pruned_count",
    "sparsity",
    "unpack_mask",
]

# Float products such as 0.29 * 100 = 28.999999999999996 must still count as 29.
_COUNT_SLACK = 1e-6


def check_fraction(value: float, what: str = "sparsity") -> float:
    """Return ``value`` as a float, or raise `InputError` unless it lies in [0, 1]."""
    value = float(value)
    if not 0.0 <= value <= 1.0 or math.isnan(value):
        raise InputError(f"{what} must be in [0, 1], got {value}")
    return value


def pruned_count(n: int, sparsity: float) -> int:
    """How many of ``n`` candidates a sparsity prunes: ``floor(sparsity * n)``.

    Parameters
    ----------
    n : int
        Number of candidates (prunable entries, or one tensor's prunable entries).
    sparsity : float
        Fraction to prune, in [0, 1].

    Returns
    -------
    int
        ``min(n, floor(sparsity * n + 1e-6))``.

    Raises
    ------
    InputError
        If ``sparsity`` is outside [0, 1].
    """
    s = check_fraction(sparsity)
    return min(int(n), int(math.floor(s * int(n) + _COUNT_SLACK)))


def kept_count(n: int, density: float) -> int:
    """How many of ``n`` candidates a density keeps: ``n - pruned_count(n, 1 - density)``."""
    d = check_fraction(density, "density")
    return int(n) - pruned_count(n, 1.0 - d)


def dense_mask(n: int, *, device: torch.device | str | None = None) -> torch.Tensor:
    """The all-kept mask of length ``n``."""
    return torch.ones(int(n), dtype=torch.bool, device=device)


def _check_same_length(a: torch.Tensor, b: torch.Tensor, what: str) -> None:
    if a.dim() != 1 or a.shape != b.shape:
        raise ValueError(
            f"{what}: expected two 1-D tensors of equal length, got {a.shape}, {b.shape}"
        )


# Float copies of bool masks, keyed by the mask's id and dtype, dropped when the mask dies
# and recomputed when it is modified in place (torch's version counter). Multiplying by a
# float mask is about 10x faster than by a bool mask or masked_fill_ with its inverse.
_FLOAT_MASKS: OrderedDict[tuple[int, torch.dtype], tuple[weakref.ref, int, torch.Tensor]] = (
    OrderedDict()
)
_FLOAT_MASKS_MAX = 4


def float_mask(mask: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """``mask`` as 1.0/0.0 of ``dtype``, cached while ``mask`` is alive and unchanged.

    Parameters
    ----------
    mask : torch.Tensor
        Bool mask.
    dtype : torch.dtype
        Float dtype of the tensors it will multiply.

    Returns
    -------
    torch.Tensor
        Do not modify it: it is shared by later calls with the same mask.
    """
    key = (id(mask), dtype)
    hit = _FLOAT_MASKS.get(key)
    if hit is not None and hit[0]() is mask and hit[1] == mask._version:
        _FLOAT_MASKS.move_to_end(key)
        return hit[2]
    converted = mask.to(dtype)
    ref = weakref.ref(mask, lambda _ref, key=key: _FLOAT_MASKS.pop(key, None))
    _FLOAT_MASKS[key] = (ref, mask._version, converted)
    while len(_FLOAT_MASKS) > _FLOAT_MASKS_MAX:
        _FLOAT_MASKS.popitem(last=False)
    return converted


def apply_mask_(flat: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Zero the pruned entries of ``flat`` in place; returns ``flat``.

    Parameters
    ----------
    flat : torch.Tensor
        1-D float tensor: weights, an update, or gradients.
    mask : torch.Tensor
        Bool mask of the same length (or its `float_mask`).

    Notes
    -----
    One multiply by the cached float mask: pruned entries become 0.0 (or -0.0 where they
    were negative; both compare equal to zero and encode as zero). It is meant for the hot
    path (after every optimiser step): keep using the same mask object so the cache hits.
    """
    _check_same_length(flat, mask, "apply_mask_")
    if mask.dtype == torch.bool:
        mask = float_mask(mask, flat.dtype)
    with torch.no_grad():
        return flat.mul_(mask)


def sparsity(mask: torch.Tensor, prunable: torch.Tensor) -> float:
    """Fraction of the prunable entries that ``mask`` prunes (0.0 for an empty set)."""
    _check_same_length(mask, prunable, "sparsity")
    total = int(prunable.sum())
    if total == 0:
        return 0.0
    return int((prunable & ~mask).sum()) / total


def density(mask: torch.Tensor, prunable: torch.Tensor) -> float:
    """Fraction of the prunable entries that ``mask`` keeps (1.0 for an empty set)."""
    return 1.0 - sparsity(mask, prunable)


def nonzero_mask(values: torch.Tensor, prunable: torch.Tensor) -> torch.Tensor:
    """The mask of a model's non-zero pattern (FedSparsify: mask = where weights != 0).

    Parameters
    ----------
    values : torch.Tensor
        Flat weights.
    prunable : torch.Tensor
        Bool vector of the prunable set.

    Returns
    -------
    torch.Tensor
        True where the value is non-zero or the entry is not prunable.
    """
    _check_same_length(values, prunable, "nonzero_mask")
    return (values != 0) | ~prunable


def pack_mask(mask: torch.Tensor) -> np.ndarray:
    """Bit-pack a mask: ``numpy.packbits`` (big bit order), ``ceil(n / 8)`` uint8 bytes."""
    if mask.dim() != 1 or mask.dtype != torch.bool:
        raise ValueError(f"pack_mask expects a 1-D bool tensor, got {mask.dtype} {mask.shape}")
    return np.packbits(mask.detach().cpu().numpy())


def unpack_mask(
    packed: np.ndarray | bytes, n: int, *, device: torch.device | str | None = None
) -> torch.Tensor:
    """Inverse of `pack_mask`.

    Parameters
    ----------
    packed : numpy.ndarray or bytes
        ``ceil(n / 8)`` bytes from `pack_mask`.
    n : int
        Length of the mask.
    device : torch.device or str, optional
        Where the returned mask lives (default CPU).

    Returns
    -------
    torch.Tensor
        1-D bool tensor of length ``n``.
    """
    buf = np.frombuffer(packed, dtype=np.uint8) if isinstance(packed, bytes) else packed
    buf = np.asarray(buf, dtype=np.uint8).reshape(-1)
    if buf.size != (int(n) + 7) // 8:
        raise ValueError(f"unpack_mask: {buf.size} bytes cannot hold a mask of length {n}")
    bits = np.unpackbits(buf, count=int(n)).astype(bool)
    return torch.from_numpy(bits).to(device) if device is not None else torch.from_numpy(bits)
