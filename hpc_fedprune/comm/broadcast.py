"""Broadcast of the new global model and its mask from root, in compressed form.

Root encodes the mask (or, when every rank already holds the previous mask, only the
positions that changed: their XOR) with :func:`.encodings.encode_mask`, and the float32
weights with :func:`.encodings.encode` under the new mask (values in mask order when the
weights are zero outside it, so no indices travel). Two ``Bcast`` calls: a 3-word header
(mode, mask bytes, weight bytes), then the payload. Every rank, root included, ends with
the same float32 vector (the decoded one: with a float16/bfloat16 wire type, root keeps the
rounded values too) and the same mask.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from mpi4py import MPI

from . import encodings
from .wire import round_values

_NO_MASK, _FULL_MASK, _MASK_CHANGE = 0, 1, 2


@dataclass(frozen=True)
class BroadcastStats:
    """What one model broadcast cost.

    Attributes
    ----------
    weights_bytes, mask_bytes : int
        Encoded sizes of the weights and of the mask (or mask change): the simulated
        downlink of one client is ``encoded_bytes``.
    weights_method, mask_method : str
        Encodings chosen ('' for the mask when there is none).
    bytes_sent, bytes_recv : int
        Payload this rank handed to / got from MPI (0 on one rank).
    """

    weights_bytes: int
    mask_bytes: int
    weights_method: str
    mask_method: str
    bytes_sent: int = 0
    bytes_recv: int = 0

    @property
    def encoded_bytes(self) -> int:
        """Bytes one client downloads: weights plus mask (change)."""
        return self.weights_bytes + self.mask_bytes

    @property
    def mpi_bytes(self) -> int:
        """Bytes this rank sent plus received through MPI."""
        return self.bytes_sent + self.bytes_recv


def _root_payload(
    weights: np.ndarray, mask: np.ndarray | None, prev_mask: np.ndarray | None, value_dtype: str
) -> tuple[int, np.ndarray, np.ndarray]:
    if mask is None:
        mode, mask_buf = _NO_MASK, np.zeros(0, dtype=np.uint8)
    elif prev_mask is None:
        mode, mask_buf = _FULL_MASK, encodings.encode_mask(mask)
    else:
        mode, mask_buf = _MASK_CHANGE, encodings.encode_mask_change(prev_mask, mask)
    weights_buf = encodings.encode(weights, shared_mask=mask, value_dtype=value_dtype)
    return mode, mask_buf, weights_buf


def broadcast_model(
    comm: MPI.Comm,
    weights: np.ndarray | None,
    mask: np.ndarray | None = None,
    *,
    prev_mask: np.ndarray | None = None,
    value_dtype: str = "float32",
    root: int = 0,
) -> tuple[np.ndarray, np.ndarray | None, BroadcastStats]:
    """Send root's global weights (and mask) to every rank, compressed.

    Collective. Root passes ``weights`` (float32, length n) and ``mask`` (bool, or None
    for an unpruned model); the other ranks pass None for both. ``prev_mask``, when given,
    must be given on every rank and be identical everywhere (the mask of the previous
    broadcast): then only the changed positions travel.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The communicator.
    weights : numpy.ndarray or None
        Root: the new global weights. Others: None.
    mask : numpy.ndarray or None
        Root: the new global mask, or None. Others: None.
    prev_mask : numpy.ndarray, optional
        The previous global mask, held identically by every rank.
    value_dtype : str
        Wire type of the weights: 'float32' (exact), 'float16' or 'bfloat16' (rounded).
    root : int
        The sending rank.

    Returns
    -------
    (numpy.ndarray, numpy.ndarray or None, BroadcastStats)
        float32 weights and bool mask, identical on every rank, and the cost.
    """
    is_root = comm.Get_rank() == root
    if is_root:
        weights = np.ascontiguousarray(weights, dtype=np.float32)
        mask = None if mask is None else np.asarray(mask, dtype=bool)
    size = comm.Get_size()
    if size == 1:
        # Serial: nothing moves, but the sizes a client would download are still exact.
        w_info = encodings.plan(weights, shared_mask=mask, value_dtype=value_dtype)
        if mask is None:
            m_bytes, m_method = 0, ""
        else:
            change = mask if prev_mask is None else np.logical_xor(prev_mask, mask)
            m_info = encodings.plan_mask(change)
            m_bytes, m_method = m_info.total_bytes, m_info.method
        stats = BroadcastStats(w_info.total_bytes, m_bytes, w_info.method, m_method)
        new_mask = None if mask is None else mask.copy()
        return round_values(weights, value_dtype), new_mask, stats

    header = np.zeros(3, dtype=np.int64)
    if is_root:
        mode, mask_buf, weights_buf = _root_payload(weights, mask, prev_mask, value_dtype)
        header[:] = (mode, mask_buf.size, weights_buf.size)
    comm.Bcast(header, root=root)
    mode, n_mask, n_weights = (int(v) for v in header)
    if is_root:
        payload = np.concatenate([mask_buf, weights_buf])
    else:
        payload = np.empty(n_mask + n_weights, dtype=np.uint8)
    comm.Bcast([payload, MPI.BYTE], root=root)
    mask_buf, weights_buf = payload[:n_mask], payload[n_mask:]

    n = encodings.describe(weights_buf).n
    if mode == _NO_MASK:
        new_mask = None
    elif mode == _FULL_MASK:
        new_mask = mask.copy() if is_root else encodings.decode_mask(mask_buf, n=n)
    else:
        if prev_mask is None:
            raise ValueError("root sent a mask change but this rank has no prev_mask")
        new_mask = mask.copy() if is_root else encodings.apply_mask_change(prev_mask, mask_buf)
    if is_root:
        new_weights = round_values(weights, value_dtype)
        sent, recv = 24 + payload.nbytes, 0
    else:
        new_weights = encodings.decode(weights_buf, n=n, shared_mask=new_mask)
        sent, recv = 0, 24 + payload.nbytes
    stats = BroadcastStats(
        weights_bytes=int(n_weights),
        mask_bytes=int(n_mask),
        weights_method=encodings.describe(weights_buf).method,
        mask_method="" if mode == _NO_MASK else encodings.describe(mask_buf).method,
        bytes_sent=sent,
        bytes_recv=recv,
    )
    return new_weights, new_mask, stats
