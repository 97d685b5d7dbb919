"""Crash-safe checkpoints: a checkpoint is a snapshot of the run file plus ``/checkpoint``.

Why a snapshot: resuming must discard every record written after the checkpoint round,
and HDF5 cannot shrink or replace groups atomically. So at a checkpoint, rank 0 copies
the closed ``run.h5`` to ``checkpoint.h5.tmp``, adds the ``/checkpoint`` group (global
weights, mask, algorithm and server state, client state, the round) with a SHA-256 of
the whole file (every object, attribute and dataset), flushes it to disk, keeps the
previous checkpoint as ``checkpoint.prev.h5`` and renames the new one into place. A crash
at any instant leaves a whole ``checkpoint.h5`` or a whole ``checkpoint.prev.h5`` (or
both); a failed write removes its temporary file. Resuming copies the snapshot back over
``run.h5`` (without the ``/checkpoint`` group): history, metrics and masks are then exactly
those of the checkpoint round.

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
    config : str or None
        The run's resolved config (YAML) as the snapshot recorded it.
    """

    round: int
    weights: np.ndarray
    mask: np.ndarray | None
    algorithm: dict = field(default_factory=dict)
    clients: dict = field(default_factory=dict)
    path: Path | None = None
    config: str | None = None


DIGEST_VERSION = 2  # 1 hashed the datasets only; 2 hashes every object and attribute
# The attributes of /checkpoint that hold the digest itself.
_DIGEST_ATTRS = frozenset({"sha256", "digest_version"})


def _digest(f: h5py.File) -> str:
    """SHA-256 over the whole file, except the digest's own two attributes.

    Every group and dataset (its path, kind, dtype and shape, in name order), every
    attribute of each (name, dtype, shape, value) and every dataset's bytes. So a changed
    attribute (the checkpoint's ``round``, a root attribute of the history snapshot), a
    renamed, added or removed object or a reinterpreted dtype is a mismatch, and a damaged
    checkpoint is never copied back over run.h5; damaged HDF5 metadata makes the walk
    itself fail, which counts the same.
    """
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name))
    h = hashlib.sha256()
    for name in ["", *sorted(names)]:
        obj = f[name] if name else f
        if isinstance(obj, h5py.Dataset):
            h.update(_fields(b"dataset", name, obj.dtype.str, obj.shape))
            h.update(_fields(_dataset_bytes(obj)))
        else:
            h.update(_fields(b"group", name))
        for key in sorted(obj.attrs):
            if name == "checkpoint" and key in _DIGEST_ATTRS:
                continue
            attr = obj.attrs.get_id(key)
            h.update(_fields(b"attribute", key, attr.dtype.str, attr.shape))
            h.update(_fields(_value_bytes(obj.attrs[key])))
    return h.hexdigest()


def _fields(*parts) -> bytes:
    """Length-prefixed parts, so that no two different sequences hash alike."""
    out = []
    for part in parts:
        raw = part if isinstance(part, bytes) else str(part).encode()
        out.append(len(raw).to_bytes(8, "little") + raw)
    return b"".join(out)


def _dataset_bytes(dataset: h5py.Dataset) -> bytes:
    """A dataset's contents as bytes that are the same at every read."""
    return _value_bytes(dataset[...])


def _value_bytes(value) -> bytes:
    """A value read from HDF5 as bytes that are the same at every read.

    Variable-length strings read as Python objects, whose ``tobytes`` would be pointers:
    those are hashed by their text instead.
    """
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode()
    data = np.asarray(value)
    if data.dtype.kind in "OU":
        items = (x if isinstance(x, bytes) else str(x).encode() for x in np.ravel(data))
        return b"\x00".join(items)
    return np.ascontiguousarray(data).tobytes()


def _fsync(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def checkpoint_bytes(state: Checkpoint) -> int:
    """An upper bound on the bytes the ``/checkpoint`` group of ``state`` takes."""
    arrays = [state.weights, state.mask, *state.algorithm.values()]
    arrays += [a for clients in state.clients.values() for a in clients.values()]
    data = sum(np.asarray(a).nbytes for a in arrays if a is not None)
    return 65536 + data + 4096 * (len(arrays) + len(state.clients))


def write_checkpoint(out_dir: Path, state: Checkpoint, reserve=None) -> Path:
    """Write ``state`` with a snapshot of ``run.h5`` atomically; returns the file written.

    ``reserve(path, nbytes)``, when given, makes room for the group in the copy before it
    is written (see `hpc_fedprune.store.rundir`). On any failure (a full disk, say) the
    temporary file is removed and the checkpoints already there stay as they were.
    """
    out_dir = Path(out_dir)
    tmp = out_dir / (CHECKPOINT + ".tmp")
    try:
        shutil.copyfile(out_dir / "run.h5", tmp)
        if reserve is not None:
            reserve(tmp, checkpoint_bytes(state))
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
            g.attrs["digest_version"] = DIGEST_VERSION
        maybe_fail("checkpoint", 0, state.round)
        _fsync(tmp)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
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
            version = g.attrs.get("digest_version", 1)
            if version != DIGEST_VERSION:
                raise ValueError(
                    f"digest version {version} (written by an older hpc_fedprune), "
                    "which cannot be verified"
                )
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
            config = f.attrs.get("config")
            return Checkpoint(
                int(g.attrs["round"]), weights, mask, algorithm, clients, Path(path), config
            )
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
    """Make ``run.h5`` the snapshot stored with ``checkpoint`` (atomic rename).

    The snapshot's objects are copied one by one into a new file, all but ``/checkpoint``.
    Deleting the group from a copy instead would keep its space: HDF5 does not give
    space back, so run.h5 would grow by a checkpoint at every resume.
    """
    out_dir = Path(out_dir)
    tmp = out_dir / "run.h5.tmp"
    try:
        with h5py.File(checkpoint.path, "r") as src, h5py.File(tmp, "w") as dst:
            for key in src.attrs:
                dtype = src.attrs.get_id(key).dtype
                dst.attrs.create(key, src.attrs[key], dtype=dtype)
            for name in src:
                if name != "checkpoint":
                    src.copy(src[name], dst, name=name)
            dst.attrs["status"] = "running"
        _fsync(tmp)
        os.replace(tmp, out_dir / "run.h5")
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def truncate_jsonl(path: Path, rounds: int) -> None:
    """Keep the first ``rounds`` lines of metrics.jsonl (one line per completed round)."""
    path = Path(path)
    lines = path.read_text().splitlines(keepends=True) if path.exists() else []
    kept = [line for line in lines if line.strip()][:rounds]
    tmp = path.with_suffix(".jsonl.tmp")
    try:
        tmp.write_text("".join(kept))
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
