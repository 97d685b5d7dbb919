"""The samples of a client on the rank's device, whether the data set is in memory or not.

The training engine indexes its inputs with tensors of sample indices (``x[sel]``). In
memory, ``x`` is one tensor on the device and that is all. A data set read on demand
(``data.on_demand``) has no such tensor: `DeviceRows` stands in for it, and
`client_samples` gives the engine, for the samples it is about to use, an object that
indexes like the whole tensor would, by the same global sample indices:

    x = client_samples(self.x, indices)   # the client's rows, read once (on demand)
    xb = x[sel]                           # sel: global indices among ``indices``

A client's rows are read in one go and kept on the device while it trains
(`RowCache`), unless they take more than ``data.client_cache_mb``; then each batch is
read when it is indexed (`BatchReader`). Either way ``x[sel]`` holds the same values as
the in-memory tensor's, so results do not change.
"""

from __future__ import annotations

import numpy as np
import torch

from ..data import OnDemandRows


class DeviceRows:
    """Inputs read on demand (`data.OnDemandRows`) as seen from one device.

    Attributes
    ----------
    rows : OnDemandRows
        The host-side reader.
    device : torch.device
    shape : tuple of int
    """

    def __init__(self, rows: OnDemandRows, device) -> None:
        self.rows = rows
        self.device = torch.device(device)
        self.shape = rows.shape
        self._last: RowCache | None = None  # the last samples read (a client's epochs reuse it)

    def __len__(self) -> int:
        return len(self.rows)

    def take(self, indices: np.ndarray) -> RowCache | BatchReader:
        """The samples ``indices``: read now, or batch by batch when they are too many.

        The last samples read are kept until others are asked for, so a client that is
        asked for again (an exploration epoch, its gradient after training) is not re-read.
        """
        ids = np.unique(np.asarray(indices, dtype=np.int64).reshape(-1))
        if len(ids) * self.rows.sample_bytes > self.rows.cache_bytes:
            return BatchReader(self)
        last = self._last
        if last is not None and len(last.host_ids) == len(ids) and (last.host_ids == ids).all():
            return last
        self._last = None  # free the old rows before reading the new ones
        self._last = RowCache(ids, self.load(ids), self.device)
        return self._last

    def load(self, indices: np.ndarray) -> torch.Tensor:
        """Samples ``indices`` (in that order) as one tensor on the device."""
        host = torch.from_numpy(self.rows.read(indices))
        if self.device.type == "cuda":
            host = host.pin_memory()
        return host.to(self.device, non_blocking=self.device.type == "cuda")


class RowCache:
    """Some samples held on the device, indexed by their global sample indices.

    Parameters
    ----------
    ids : numpy.ndarray
        The samples' global indices, sorted and unique.
    data : torch.Tensor
        Their inputs, in the order of ``ids``.
    """

    def __init__(self, ids: np.ndarray, data: torch.Tensor, device) -> None:
        self.host_ids = ids
        self.ids = torch.as_tensor(ids, device=device)
        self.data = data
        self.device = torch.device(device)

    def __getitem__(self, sel) -> torch.Tensor:
        rows = self.data[torch.searchsorted(self.ids, _index_tensor(sel, self.device))]
        return _placed_like_slice(rows, sel)


class BatchReader:
    """Samples read when they are indexed: one read per batch (for very large clients)."""

    def __init__(self, rows: DeviceRows) -> None:
        self.rows = rows
        self.device = rows.device

    def __getitem__(self, sel) -> torch.Tensor:
        index = _index_tensor(sel, self.device)
        rows = self.rows.load(index.reshape(-1).cpu().numpy())
        return _placed_like_slice(rows.reshape(*index.shape, *self.rows.shape[1:]), sel)


def _index_tensor(sel, device) -> torch.Tensor:
    """An index tensor from a tensor, an array or a slice of global sample indices."""
    if isinstance(sel, slice):
        return torch.arange(sel.start or 0, sel.stop, sel.step or 1, device=device)
    return torch.as_tensor(sel, device=device)


_ALIGN = 64  # bytes: the alignment of torch's CPU allocations


def _placed_like_slice(rows: torch.Tensor, sel) -> torch.Tensor:
    """``rows`` at the address alignment that the slice ``sel`` of the whole array would have.

    Evaluation slices the in-memory test set (``x[lo:hi]``, a view), so a batch starts
    ``lo`` samples into the array; some CPU kernels give different last bits for inputs
    at different alignments (seen: a linear layer on 3 rows whose start is not 16-byte
    aligned). A slice of rows read on demand is therefore placed at the same offset from
    an aligned start. Index tensors make new tensors in memory too: nothing to do.
    """
    if not isinstance(sel, slice) or rows.device.type != "cpu" or not rows.numel():
        return rows
    shift = (sel.start or 0) * rows[0].numel() * rows.element_size() % _ALIGN
    if shift == 0:
        return rows
    room = torch.empty(rows.numel() * rows.element_size() + _ALIGN, dtype=torch.uint8)
    start = (shift - room.data_ptr()) % _ALIGN
    placed = room[start : start + rows.numel() * rows.element_size()].view(rows.dtype)
    return placed.view(rows.shape).copy_(rows)


def client_samples(x, indices: np.ndarray):
    """What to index for the samples ``indices`` of ``x``: ``x`` itself when it is a tensor.

    For inputs read on demand (`DeviceRows`), the rows of ``indices`` (`DeviceRows.take`),
    indexable by the same global indices as the whole tensor.
    """
    if isinstance(x, DeviceRows):
        return x.take(indices)
    return x
