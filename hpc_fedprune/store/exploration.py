"""The ``/exploration`` group of the run file, and the saved state of an unfinished phase."""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np


def write_exploration(path: Path, record: dict) -> None:
    """Rank 0: write ``record`` (``datasets`` and ``attrs``) as ``/exploration`` of ``path``.

    Parameters
    ----------
    path : Path
        The run file (already created).
    record : dict
        ``{"datasets": {name: array}, "attrs": {name: value}}``; replaces any earlier group.
    """
    with h5py.File(path, "a") as f:
        if "exploration" in f:
            del f["exploration"]
        group = f.create_group("exploration")
        for name, values in record["datasets"].items():
            group.create_dataset(name, data=np.asarray(values), compression="gzip")
        for name, value in record["attrs"].items():
            group.attrs[name] = value


# The explorers an exploration phase has finished, kept in the run directory so that a
# stopped (or killed) run does not train them again: written when a stop signal ends the
# phase early and when the phase completes; removed when the run finishes.
EXPLORATION_STATE = "exploration_state.h5"


@dataclass
class ExplorationState:
    """The finished part of an exploration phase.

    Attributes
    ----------
    explorers : numpy.ndarray
        Every explorer of the phase (sorted ids): the state belongs to this draw.
    clients : numpy.ndarray
        The explorers finished (sorted ids).
    epochs : numpy.ndarray
        Exploration epochs each finished explorer ran (same order as ``clients``).
    bytes_up : numpy.ndarray
        Each finished explorer's encoded upload (same order).
    sums : numpy.ndarray
        The finished explorers' exact int64 displacement sums (the phase's accumulator,
        packed): adding the others' sums gives the same bits as one uninterrupted phase.
    """

    explorers: np.ndarray
    clients: np.ndarray
    epochs: np.ndarray
    bytes_up: np.ndarray
    sums: np.ndarray

    @property
    def complete(self) -> bool:
        """Whether every explorer is finished."""
        return len(self.clients) == len(self.explorers)


_STATE_FIELDS = ("explorers", "clients", "epochs", "bytes_up", "sums")


def _state_digest(arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256()
    for name in _STATE_FIELDS:
        data = np.ascontiguousarray(arrays[name], dtype=np.int64)
        h.update(name.encode() + len(data).to_bytes(8, "little") + data.tobytes())
    return h.hexdigest()


def write_exploration_state(directory: Path, state: ExplorationState) -> Path:
    """Rank 0: write ``state`` as ``DIR/exploration_state.h5`` (atomic: temporary + rename).

    Raises OSError when it cannot be written (the temporary file is then removed).
    """
    final = Path(directory) / EXPLORATION_STATE
    tmp = final.with_name(final.name + ".tmp")
    arrays = {name: np.asarray(getattr(state, name), dtype=np.int64) for name in _STATE_FIELDS}
    try:
        with h5py.File(tmp, "w") as f:
            for name, data in arrays.items():
                f.create_dataset(name, data=data)
            f.attrs["sha256"] = _state_digest(arrays)
        fd = os.open(tmp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, final)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return final


def read_exploration_state(directory: Path) -> ExplorationState | None:
    """The saved exploration of a run directory; None when there is none or it is damaged.

    A damaged file is reported on stderr (the phase then runs again from the start).
    """
    path = Path(directory) / EXPLORATION_STATE
    if not path.exists():
        return None
    try:
        with h5py.File(path, "r") as f:
            arrays = {name: f[name][...].astype(np.int64) for name in _STATE_FIELDS}
            if _state_digest(arrays) != f.attrs["sha256"]:
                raise ValueError("checksum mismatch")
    except Exception as exc:  # noqa: BLE001 - h5py reports damage as many exception types
        print(
            f"warning: {path} is damaged ({str(exc).splitlines()[0] if str(exc) else exc!r}); "
            "the exploration phase runs again from the start",
            file=sys.stderr,
            flush=True,
        )
        return None
    return ExplorationState(**arrays)
