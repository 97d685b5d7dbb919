"""One copy per node: arrays that one rank builds and every rank of its node reads.

Every rank used to build the whole data set itself (data sets are pure functions of the
config), so 64 ranks on a node held 64 identical copies, and generated or decoded them
64 times. `NodeShared` keeps one copy per node in an MPI-3 shared-memory window: the
ranks of a node form a communicator (``Split_type(COMM_TYPE_SHARED)``), its rank 0 builds
the arrays and copies them into a window that it allocates (``Win.Allocate_shared``), and
every rank of the node, that one included, reads them through read-only numpy views of
the window. Ranks on other nodes do the same with their own copy; nothing travels
between nodes.

The builder's errors are the node's: a bad input seen by the building rank is raised as
the same `InputError` on every rank of its node, so that the ranks agree on it as on any
other bad input. The window lives until `NodeShared.free` (collective over the node),
after which the views must not be used.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from ..errors import InputError

# Bytes: every array starts on a cache line, as aligned as any allocation of numpy or
# torch (some CPU kernels give other last bits for inputs at other alignments).
_ALIGN = 64


def _mpi():
    from mpi4py import MPI

    return MPI


class NodeShared:
    """Arrays shared by the ranks of one node (collective over ``comm``'s ranks on a node).

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The run's communicator; it is split by node.
    wait : callable, optional
        Completes a nonblocking request (`World.wait`: spinning or sleeping); the ranks of
        a node wait in it while one of them builds. Default: ``request.Wait()``.

    Attributes
    ----------
    local_rank, local_size : int
        This rank and the number of ranks on the node.
    """

    def __init__(self, comm, wait: Callable[[Any], None] | None = None) -> None:
        MPI = _mpi()
        self.node = comm.Split_type(MPI.COMM_TYPE_SHARED, key=comm.Get_rank())
        self._wait = wait or (lambda request: request.Wait())
        self.local_rank = self.node.Get_rank()
        self.local_size = self.node.Get_size()
        self._windows: list[Any] = []

    @property
    def builds(self) -> bool:
        """True on the rank of the node that builds the arrays."""
        return self.local_rank == 0

    def share(
        self, build: Callable[[], tuple[dict[str, np.ndarray], Any]]
    ) -> tuple[dict[str, np.ndarray], Any]:
        """Collective over the node: ``build()`` on one rank, read-only views on every rank.

        Parameters
        ----------
        build : callable
            Returns ``(arrays, extra)``: named numpy arrays and any picklable object that
            travels with them (e.g. a data set's task and name). Called on the building
            rank only.

        Returns
        -------
        (dict of numpy.ndarray, object)
            Views of the node's copy (not writable) with the builder's names, shapes and
            dtypes, and the builder's ``extra``.

        Raises
        ------
        InputError
            On every rank of the node, when ``build`` raised it on the building rank.
        """
        arrays: dict[str, np.ndarray] = {}
        message: Any = None
        if self.builds:
            try:
                arrays, extra = build()
                layout = [(k, a.dtype.str, a.shape) for k, a in arrays.items()]
                message = ("ok", layout, extra)
            except InputError as exc:
                message = ("error", str(exc))
        self._wait(self.node.Ibarrier())  # while one rank builds, the others wait (or sleep)
        message = self.node.bcast(message, root=0)
        if message[0] == "error":
            raise InputError(message[1])
        _, layout, extra = message
        offsets, total = _offsets(layout)
        MPI = _mpi()
        # Only the building rank asks for memory; the others map its segment.
        size = total + _ALIGN  # room to start on an aligned address
        window = MPI.Win.Allocate_shared(size if self.builds else 0, 1, comm=self.node)
        self._windows.append(window)
        buffer, _ = window.Shared_query(0)
        memory = np.frombuffer(buffer, dtype=np.uint8, count=size)
        # Every rank maps the segment at its own address, but at the same offset within a
        # page, so every rank skips the same number of bytes.
        memory = memory[-memory.ctypes.data % _ALIGN :][:total]
        views = {}
        for (name, dtype, shape), offset in zip(layout, offsets):
            dt = np.dtype(dtype)
            count = int(np.prod(shape, dtype=np.int64))
            view = memory[offset : offset + count * dt.itemsize].view(dt).reshape(shape)
            if self.builds:
                view[...] = arrays[name]
            views[name] = view
        del arrays  # the builder's private copy goes; the window is the node's copy
        self._wait(self.node.Ibarrier())  # every view is filled before anyone reads it
        for view in views.values():
            view.flags.writeable = False
        return views, extra

    def free(self) -> None:
        """Collective over the node: release the windows and the node communicator."""
        for window in self._windows:
            window.Free()
        self._windows.clear()
        if self.node is not None:
            self.node.Free()
            self.node = None


def _offsets(layout: list[tuple[str, str, tuple[int, ...]]]) -> tuple[list[int], int]:
    """Byte offset of every array in the window (each aligned) and the window's size."""
    offsets, total = [], 0
    for _, dtype, shape in layout:
        offsets.append(total)
        nbytes = int(np.prod(shape, dtype=np.int64)) * np.dtype(dtype).itemsize
        total += -(-nbytes // _ALIGN) * _ALIGN
    return offsets, max(total, _ALIGN)
