"""Bytes: what simulated clients send and receive, and what the ranks actually move.

Client traffic is the exact size of the encoded buffers (`hpc_fedprune.comm.encodings`:
values over a shared mask, COO, Elias-Fano delta or bitmap positions plus values, or
dense, whichever is smallest), never an estimate from the sparsity. The sizes come from
counts taken on the device (`plan_from_counts` equals `plan` on the real buffer), so no
client buffer is built or copied to the host just to be measured. MPI traffic is the
payload each rank handed to or got from the round's collectives.
"""

from __future__ import annotations

import numpy as np
import torch

from ..algorithms.base import ClientUpdate, GlobalModel
from ..comm import collectives
from ..comm.encodings import EncodedInfo, plan_from_counts, plan_mask
from ..comm.world import World


def upload_info(upload: ClientUpdate, value_dtype: str) -> EncodedInfo:
    """The encoding of one client's upload (smallest method, exact size).

    Vectors in ``upload.side`` are encoded on their own (a bool one as a mask, a float one
    as values) and their bytes added; the result is then a ``side`` info with the parts.
    """
    message = upload.message
    nnz = int(torch.count_nonzero(message))
    shared_k = int(upload.support.sum()) if upload.shared_support else None
    info = plan_from_counts(message.numel(), nnz, value_dtype=value_dtype, shared_k=shared_k)
    if not upload.side:
        return info
    parts = [info] + [side_info(vector, value_dtype) for vector in upload.side]
    return EncodedInfo(
        method="side",
        n=info.n,
        count=sum(p.count for p in parts),
        value_dtype=value_dtype,
        header_bytes=sum(p.header_bytes for p in parts),
        index_bytes=sum(p.index_bytes for p in parts),
        value_bytes=sum(p.value_bytes for p in parts),
        parts=tuple(parts),
    )


def side_info(vector: torch.Tensor, value_dtype: str) -> EncodedInfo:
    """The encoding of one vector sent beside the message: a mask or float values."""
    if vector.dtype == torch.bool:
        return plan_mask(vector.cpu().numpy())
    nnz = int(torch.count_nonzero(vector))
    return plan_from_counts(vector.numel(), nnz, value_dtype=value_dtype)


def download_info(model: GlobalModel, value_dtype: str) -> EncodedInfo:
    """The encoding of the global model one client downloads (positions included: the
    client holds no state between participations)."""
    nnz = int(torch.count_nonzero(model.weights))
    return plan_from_counts(model.weights.numel(), nnz, value_dtype=value_dtype)


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


def reduce_to_root(
    world: World, packed: np.ndarray, method: str, shared: np.ndarray | None
) -> tuple[np.ndarray | None, int]:
    """Exact int64 sum of every rank's packed accumulator on rank 0, and the bytes this rank sent.

    ``shared``: bool support (over the packed vector) outside which every rank's sum is
    zero, so the values travel without indices.
    """
    total, stats = collectives.reduce_sum(
        world.comm, packed, method=method, root=0, shared_support=shared
    )
    return total, stats.bytes_sent


def broadcast_model(
    world: World, model: GlobalModel | None, previous_mask, device
) -> tuple[GlobalModel, int]:
    """Every rank receives rank 0's new global weights and mask; returns the bytes this rank sent.

    Only the mask's changes travel when every rank holds the previous mask.
    """
    if world.size == 1:
        return model, 0
    prev = None if previous_mask is None else previous_mask.cpu().numpy()
    weights, mask, stats = collectives.broadcast_model(
        world.comm,
        model.weights.cpu().numpy() if world.is_root else None,
        None if not world.is_root or model.mask is None else model.mask.cpu().numpy(),
        prev_mask=prev,
    )
    if world.is_root:
        return model, stats.bytes_sent
    mask_t = None if mask is None else torch.from_numpy(mask).to(device)
    return GlobalModel(torch.from_numpy(weights).to(device), mask_t), stats.bytes_sent
