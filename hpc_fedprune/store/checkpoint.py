"""Crash-safe checkpoints: a checkpoint is a snapshot of the run file plus ``/checkpoint``.

Why a snapshot: resuming must discard every record written after the checkpoint round,
and HDF5 cannot shrink or replace groups atomically. So at a checkpoint, rank 0 copies
the closed ``run.h5`` to ``checkpoint.h5.tmp``, adds the ``/checkpoint`` group (global
weights, mask, algorithm and server state, client state, the round) with a SHA-256 of
its contents, flushes it to disk, keeps the previous checkpoint as ``checkpoint.prev.h5``
and renames the new one into place. A crash at any instant leaves a whole
``checkpoint.h5`` or a whole ``checkpoint.prev.h5`` (or both). Resuming copies the
snapshot back over ``run.h5``: history, metrics and masks are then exactly those of the
checkpoint round.

No random generator state is stored: every random draw is keyed by (seed, round,
client), so the round number is the whole of it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from ..faults import maybe_fail

CHECKPOINT = "checkpoint.h5"
PREVIOUS = "checkpoint.prev.h5"


@dataclass
class Checkpoint:
    """The state a run continues from.

    Attributes
    ----------
    round : int
        Last completed round.
    weights : numpy.ndarray
        Global float32 weights.
    mask : numpy.ndarray or None
        Global bool mask.
    algorithm : dict
        ``name -> numpy array or None``: the algorithm's server state.
    clients : dict
        ``name -> {client id -> numpy array}``: persistent client state.
    path : Path
        The file it was read from.
    """

    round: int
    weights: np.ndarray
    mask: np.ndarray | None
    algorithm: dict = field(default_factory=dict)
    clients: dict = field(default_factory=dict)
    path: Path | None = None


def _digest(f: h5py.File) -> str:
    """SHA-256 over every dataset of the file (names and bytes, in name order).

    Covering the history snapshot too means a damaged checkpoint is never copied back
    over run.h5; damaged HDF5 metadata makes the walk itself fail, which counts the same.
    """
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
    h = hashlib.sha256()
    for name in sorted(names):
        h.update(name.encode())
        h.update(_dataset_bytes(f[name]))
    return h.hexdigest()


def _dataset_bytes(dataset: h5py.Dataset) -> bytes:
    """A dataset's contents as bytes that are the same at every read.

    Variable-length strings read as Python objects, whose ``tobytes`` would be pointers:
    those are hashed by their text instead.
    """
    data = dataset[...]
    if data.dtype.kind == "O":
        items = (x if isinstance(x, bytes) else str(x).encode() for x in np.ravel(data))
        return b"\x00".join(items)
    return np.ascontiguousarray(data).tobytes()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_checkpoint(out_dir: Path, state: Checkpoint) -> Path:
    """Write ``state`` with a snapshot of ``run.h5`` atomically; returns the file written."""
    out_dir = Path(out_dir)
    tmp = out_dir / (CHECKPOINT + ".tmp")
    shutil.copyfile(out_dir / "run.h5", tmp)
    with h5py.File(tmp, "a") as f:
        if "checkpoint" in f:
            del f["checkpoint"]
        g = f.create_group("checkpoint")
        g.attrs["round"] = int(state.round)
        g.create_dataset("weights", data=state.weights)
        if state.mask is not None:
            packed = np.packbits(state.mask)
            g.create_dataset("mask", data=packed)
        algo = g.create_group("algorithm")
        for key in sorted(state.algorithm):
            value = state.algorithm[key]
            if value is not None:
                algo.create_dataset(key, data=np.asarray(value))
        clients = g.create_group("clients")
        for name in sorted(state.clients):
            sub = clients.create_group(name)
            for cid in sorted(state.clients[name]):
                sub.create_dataset(str(cid), data=state.clients[name][cid])
        g.attrs["sha256"] = _digest(f)
    maybe_fail("checkpoint", 0, state.round)
    _fsync(tmp)
    final = out_dir / CHECKPOINT
    if final.exists():
        os.replace(final, out_dir / PREVIOUS)
    os.replace(tmp, final)
    return final


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify one checkpoint file (raises ValueError if damaged)."""
    try:
        with h5py.File(path, "r") as f:
            g = f["checkpoint"]
            weights = g["weights"][...]
            mask = None
            if "mask" in g:
                packed = g["mask"][...]
                mask = np.unpackbits(packed, count=len(weights)).astype(bool)
            algorithm = {}
            for key in sorted(g["algorithm"]):
                algorithm[key] = g["algorithm"][key][...]
            clients: dict = {}
            for name in sorted(g["clients"]):
                clients[name] = {}
                for cid in sorted(g["clients"][name], key=int):
                    clients[name][int(cid)] = g["clients"][name][cid][...]
            if _digest(f) != g.attrs["sha256"]:
                raise ValueError("checksum mismatch")
            return Checkpoint(int(g.attrs["round"]), weights, mask, algorithm, clients, Path(path))
    except Exception as exc:  # noqa: BLE001 - h5py reports damage as many exception types
        raise ValueError(
            f"{path.name}: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None


def latest_checkpoint(out_dir: Path) -> Checkpoint | None:
    """The newest intact checkpoint of a run directory, or None if it has none.

    A damaged ``checkpoint.h5`` is reported on stderr and the previous one is used.

    Raises
    ------
    InputError
        Checkpoint files exist but none of them is intact.
    """
    problems = []
    for name in (CHECKPOINT, PREVIOUS):
        path = Path(out_dir) / name
        if not path.exists():
            continue
        try:
            return read_checkpoint(path)
        except ValueError as exc:
            problems.append(str(exc))
            print(
                f"warning: checkpoint {path} is damaged ({exc}); trying an older one",
                file=sys.stderr,
                flush=True,
            )
    if problems:
        raise InputError(f"no intact checkpoint in {out_dir}: {'; '.join(problems)}")
    return None


def restore_run_file(out_dir: Path, checkpoint: Checkpoint) -> None:
    """Make ``run.h5`` the snapshot stored with ``checkpoint`` (atomic rename)."""
    tmp = Path(out_dir) / "run.h5.tmp"
    shutil.copyfile(checkpoint.path, tmp)
    with h5py.File(tmp, "a") as f:
        del f["checkpoint"]
        f.attrs["status"] = "running"
    os.replace(tmp, Path(out_dir) / "run.h5")


def truncate_jsonl(path: Path, rounds: int) -> None:
    """Keep the first ``rounds`` lines of metrics.jsonl (one line per completed round)."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    kept = [line for line in lines if line.strip()][:rounds]
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(kept))
    os.replace(tmp, path)
