"""Persistent per-client state: a compact in-memory store that spills to local disk.

Methods such as Top-k with error feedback keep arrays per client between its
participations (a residual; later local masks or optimiser state). The algorithm declares
them (`Algorithm.client_state_arrays`: ``name -> (dtype, length)``); this store holds them
per client id on one rank.

Storage is exact: float arrays keep their dtype and bits, bool arrays are bit-packed
(``numpy.packbits``, 8 entries a byte), so a state read back is bit-identical to the one
stored whatever the path it took (memory, spill file, checkpoint).

Memory budget: records live in memory in least-recently-stored order; when their bytes
exceed ``budget_bytes`` the oldest ones move to a spill file of fixed-size slots (every
record has the same size, so a freed slot is reused by the next spilled record). The
spill file lives in a fresh folder under ``spill_dir`` (default: the system temporary
folder, ``$TMPDIR``, node-local on clusters), is private to the rank and is deleted by
`close`. A state is created lazily: a client that never participated has none.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import weakref
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np

State = dict[str, np.ndarray]


@dataclass(frozen=True)
class StateArray:
    """One named per-client array: its dtype and length, and its compact size in bytes."""

    name: str
    dtype: np.dtype
    length: int

    @property
    def packed(self) -> bool:
        return self.dtype == np.bool_

    @property
    def nbytes(self) -> int:
        if self.packed:
            return (self.length + 7) // 8
        return self.length * self.dtype.itemsize


def make_specs(arrays: dict[str, tuple]) -> tuple[StateArray, ...]:
    """``name -> (dtype, length)`` as specs in name order (the record layout)."""
    return tuple(
        StateArray(name, np.dtype(dtype), int(length))
        for name, (dtype, length) in sorted(arrays.items())
    )


class ClientStateStore:
    """Per-client state of one rank, within a memory budget, spilling to a local file.

    Parameters
    ----------
    arrays : dict
        ``name -> (dtype, length)``: the arrays every client's state holds.
    budget_bytes : int
        Bytes of records kept in memory; older records beyond it go to the spill file
        (0: every record is spilled as soon as it is stored).
    spill_dir : str or Path, optional
        Folder in which the rank's private spill folder is made (default ``$TMPDIR``).
    """

    def __init__(self, arrays: dict[str, tuple], budget_bytes: int, spill_dir=None) -> None:
        self.specs = make_specs(arrays)
        self.record_bytes = sum(s.nbytes for s in self.specs)
        self.budget_bytes = int(budget_bytes)
        self.spill_dir = spill_dir
        self._memory: OrderedDict[int, list[np.ndarray]] = OrderedDict()  # oldest first
        self._slots: dict[int, int] = {}  # client -> slot in the spill file
        self._free: list[int] = []
        self._next_slot = 0
        self._folder: Path | None = None
        self._fd: int | None = None
        self.spills = 0  # records written to the file (a measure of disk traffic)

    # ---------------------------------------------------------------- queries
    def __len__(self) -> int:
        return len(self._memory) + len(self._slots)

    def __contains__(self, client: int) -> bool:
        return client in self._memory or client in self._slots

    def clients(self) -> list[int]:
        """Ids of the clients with a stored state, in increasing order."""
        return sorted([*self._memory, *self._slots])

    @property
    def memory_bytes(self) -> int:
        """Bytes of the records held in memory."""
        return len(self._memory) * self.record_bytes

    @property
    def spilled(self) -> int:
        """Records currently in the spill file."""
        return len(self._slots)

    # ---------------------------------------------------------------- updates
    def put(self, client: int, state: State) -> None:
        """Store ``client``'s state (replacing any), then enforce the memory budget."""
        record = [self._pack(spec, state[spec.name]) for spec in self.specs]
        self._forget(client)
        self._memory[client] = record
        while self._memory and self.memory_bytes > self.budget_bytes:
            old, old_record = self._memory.popitem(last=False)
            self._spill(old, old_record)

    def take(self, client: int) -> State | None:
        """Remove and return ``client``'s state (None if it has none)."""
        record = self._memory.pop(client, None)
        if record is None and client in self._slots:
            record = self._read(self._slots[client])
            self._free.append(self._slots.pop(client))
        return None if record is None else self._unpack(record)

    def peek(self, client: int) -> State | None:
        """``client``'s state without removing it or changing the spill order."""
        record = self._memory.get(client)
        if record is None and client in self._slots:
            record = self._read(self._slots[client])
        return None if record is None else self._unpack(record)

    def close(self) -> None:
        """Drop every record and delete the spill folder."""
        self._memory.clear()
        self._slots.clear()
        self._free.clear()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self._folder is not None:
            shutil.rmtree(self._folder, ignore_errors=True)
            self._folder = None

    # --------------------------------------------------------------- encoding
    def _pack(self, spec: StateArray, value: np.ndarray) -> np.ndarray:
        value = np.asarray(value)
        if value.shape != (spec.length,) or value.dtype != spec.dtype:
            raise ValueError(
                f"client state {spec.name!r}: expected {spec.dtype} of length {spec.length}, "
                f"got {value.dtype} of shape {value.shape}"
            )
        if spec.packed:
            return np.packbits(value)
        return np.array(value, copy=True)  # never alias the caller's buffer

    def _unpack(self, record: list[np.ndarray]) -> State:
        out = {}
        for spec, data in zip(self.specs, record):
            if spec.packed:
                out[spec.name] = np.unpackbits(data, count=spec.length).astype(bool)
            else:
                out[spec.name] = data
        return out

    # ------------------------------------------------------------------ spill
    def _forget(self, client: int) -> None:
        self._memory.pop(client, None)
        if client in self._slots:
            self._free.append(self._slots.pop(client))

    def _open(self) -> int:
        if self._fd is None:
            base = self.spill_dir or tempfile.gettempdir()
            Path(base).mkdir(parents=True, exist_ok=True)
            self._folder = Path(tempfile.mkdtemp(prefix="hpc_fedprune-state-", dir=base))
            # Removed at interpreter exit too when `close` is never reached (an exception).
            weakref.finalize(self, shutil.rmtree, str(self._folder), True)
            path = self._folder / "spill.bin"
            self._fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o600)
        return self._fd

    def _spill(self, client: int, record: list[np.ndarray]) -> None:
        fd = self._open()
        slot = self._free.pop() if self._free else self._next_slot
        if slot == self._next_slot:
            self._next_slot += 1
        offset = slot * self.record_bytes
        for data in record:
            view = memoryview(np.ascontiguousarray(data)).cast("B")
            written = 0
            while written < len(view):
                written += os.pwrite(fd, view[written:], offset + written)
            offset += len(view)
        self._slots[client] = slot
        self.spills += 1

    def _read(self, slot: int) -> list[np.ndarray]:
        offset = slot * self.record_bytes
        record = []
        for spec in self.specs:
            size = spec.nbytes
            data = np.empty(size, dtype=np.uint8)
            view = memoryview(data)
            got = 0
            while got < size:
                n = os.preadv(self._fd, [view[got:]], offset + got)
                if n <= 0:
                    raise OSError(f"spill file truncated at slot {slot}")
                got += n
            dtype = np.uint8 if spec.packed else spec.dtype
            record.append(data.view(dtype))
            offset += size
        return record
