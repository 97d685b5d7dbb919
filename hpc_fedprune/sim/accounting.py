"""Bytes: what simulated clients send and receive, and what the ranks actually move.

Client traffic is measured from the encoded buffers (`hpc_fedprune.comm.encodings`),
never estimated from the sparsity. MPI traffic is the payload each rank hands to the
collectives of the round.
"""

from __future__ import annotations

import numpy as np
import torch

from ..algorithms.base import GlobalModel, Upload
from ..comm.world import World, bcast_array

HEADER_BYTES = 16
VALUE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}


def upload_bytes(upload: Upload, value_dtype: str) -> tuple[int, int]:
    """(encoded bytes, value bytes only) of one client's upload."""
    n = upload.message.numel() if upload.support is None else int(upload.support.sum())
    values = n * VALUE_BYTES[value_dtype]
    return HEADER_BYTES + values, values


def download_bytes(model: GlobalModel, value_dtype: str) -> int:
    """Encoded bytes of the global model one client downloads."""
    n = model.weights.numel() if model.mask is None else int(model.mask.sum())
    return HEADER_BYTES + n * VALUE_BYTES[value_dtype]


def sparsity(model: GlobalModel, prunable: torch.Tensor) -> float:
    """Fraction of the prunable set that is pruned (by the mask) or zero (dense methods)."""
    total = int(prunable.sum())
    if total == 0:
        return 0.0
    if model.mask is not None:
        kept = int((model.mask & prunable).sum())
    else:
        kept = int(((model.weights != 0) & prunable).sum())
    return 1.0 - kept / total


def reduce_to_root(world: World, packed: np.ndarray) -> tuple[np.ndarray | None, int]:
    """Exact int64 sum of every rank's packed accumulator, on rank 0; and bytes moved."""
    total = world.sum_int64(packed)
    return (total if world.is_root else None), packed.nbytes * world.size


def broadcast_model(world: World, model: GlobalModel | None, device) -> tuple[GlobalModel, int]:
    """Every rank receives rank 0's new global weights and mask; returns bytes moved."""
    if world.size == 1:
        return model, 0
    meta = world.bcast_object(None if not world.is_root else (model.weights.numel(), model.mask is not None))
    numel, has_mask = meta
    weights = bcast_array(world, model.weights.cpu().numpy() if world.is_root else None, (numel,), np.float32)
    moved = weights.nbytes * (world.size - 1)
    mask = None
    if has_mask:
        packed = np.packbits(model.mask.cpu().numpy()) if world.is_root else None
        packed = bcast_array(world, packed, ((numel + 7) // 8,), np.uint8)
        moved += packed.nbytes * (world.size - 1)
        if not world.is_root:
            mask = torch.from_numpy(np.unpackbits(packed, count=numel).astype(bool)).to(device)
    if world.is_root:
        return model, moved
    return GlobalModel(torch.from_numpy(weights.copy()).to(device), mask), moved
