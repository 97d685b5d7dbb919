"""Crash-safe checkpoints that do not grow with the run's history or its clients.

A checkpoint (``checkpoint.h5``) holds what a resumed run needs after round ``round`` and
a record of ``run.h5`` at that round, never a copy of its history:

- ``/checkpoint``: the global weights, the mask, the algorithm's server state and every
  client's persistent state (one row per client: ``clients/id`` and one 2-D dataset per
  state array, written chunk by chunk as the home ranks send them, so rank 0 never holds
  more than a chunk of client state);
- ``/checkpoint/run``: every object of ``run.h5`` at the round (``paths``) and, for each
  dataset that grows by rows, its row count (``rows``; -1 for the others);
- the root attributes of ``run.h5`` at the round, on the checkpoint's own root.

The rounds of ``run.h5`` are append-only: rows are added, never changed. So resuming
rebuilds ``run.h5`` from itself: every recorded object copied, the growing datasets cut
to their recorded rows, objects made after the checkpoint left out, and the root
attributes put back (`restore_run_file`). The new file is written next to the old one
and renamed into place, so a failure at any point leaves the old ``run.h5`` as it was.

Writing one: rank 0 writes ``checkpoint.h5.tmp`` (space reserved first), adds a SHA-256 of
the whole file (every object, attribute and dataset), flushes it to disk, keeps the
previous checkpoint as ``checkpoint.prev.h5`` and renames the new one into place. A crash
at any instant leaves a whole ``checkpoint.h5`` or a whole ``checkpoint.prev.h5`` (or
both); a failed write removes its temporary file.

No random generator state is stored: every random draw is keyed by (seed, round,
client), so the round number is the whole of it.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from ..errors import InputError
from ..faults import maybe_fail

CHECKPOINT = "checkpoint.h5"
PREVIOUS = "checkpoint.prev.h5"
# 1: a snapshot of run.h5 plus /checkpoint, one dataset per client (earlier versions);
# 2: a record of run.h5's row counts, client state as one row per client.
CHECKPOINT_FORMAT = 2
_BLOCK_BYTES = 16 * 2**20  # rows read or hashed at a time, so no whole dataset is in memory

State = dict[str, np.ndarray]


@dataclass
class ClientChunks:
    """Client state that arrives in chunks (``{client id: {name: array}}`` each).

    Attributes
    ----------
    arrays : dict
        ``name -> (dtype, length)``: the arrays every client's state holds.
    count : int
        The number of clients the chunks hold in all.
    chunks : iterable of dict
        The chunks, each read once; ids never repeat.
    """

    arrays: dict
    count: int
    chunks: Iterable[dict[int, State]]

    @classmethod
    def from_dict(cls, clients: dict) -> ClientChunks:
        """One chunk from ``name -> {client id -> array}`` (every name the same ids)."""
        names = sorted(clients)
        ids = sorted(set().union(*(clients[n].keys() for n in names))) if names else []
        arrays = {}
        for n in names:
            first = np.asarray(next(iter(clients[n].values())))
            arrays[n] = (first.dtype, len(first))
        chunk = {c: {n: np.asarray(clients[n][c]) for n in names} for c in ids}
        return cls(arrays, len(ids), [chunk] if chunk else [])

    @property
    def row_bytes(self) -> int:
        """Bytes of one client's row in the checkpoint (bool arrays bit-packed)."""
        return 8 + sum(_stored_width(np.dtype(d), n) for d, n in self.arrays.values())


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
    clients : ClientChunks, dict or None
        Persistent client state: to write, `ClientChunks` (or ``name -> {client id ->
        array}``); a checkpoint read back leaves it None and `client_chunks` streams it.
    path : Path
        The file it was read from.
    config : str or None
        The run's resolved config (YAML) as ``run.h5`` recorded it.
    """

    round: int
    weights: np.ndarray
    mask: np.ndarray | None
    algorithm: dict = field(default_factory=dict)
    clients: ClientChunks | dict | None = None
    path: Path | None = None
    config: str | None = None

    def client_chunks(self, max_bytes: int = _BLOCK_BYTES) -> Iterator[dict[int, State]]:
        """The checkpointed client states, ``{client id: {name: array}}`` in chunks of
        at most ``max_bytes`` of stored rows (one row at least); nothing without a file."""
        if self.path is None:
            return
        with h5py.File(self.path, "r") as f:
            group = f["checkpoint/clients"]
            ids = group["id"]
            names = sorted(n for n in group if n != "id")
            width = 8 + sum(group[n].shape[1] * group[n].dtype.itemsize for n in names)
            step = max(1, max_bytes // width)
            for start in range(0, len(ids), step):
                rows = {n: group[n][start : start + step] for n in names}
                chunk = {}
                for i, client in enumerate(ids[start : start + step].tolist()):
                    chunk[int(client)] = {n: _unstored(group[n], rows[n][i]) for n in names}
                yield chunk

    def client_count(self) -> int:
        """How many clients' states the checkpoint holds (0 without a file)."""
        if self.path is None:
            return 0
        with h5py.File(self.path, "r") as f:
            return len(f["checkpoint/clients/id"])

    def client_arrays(self) -> list[str]:
        """Names of the client state arrays the checkpoint holds (its file's)."""
        if self.path is None:
            return []
        with h5py.File(self.path, "r") as f:
            return sorted(n for n in f["checkpoint/clients"] if n != "id")


class OldCheckpointError(ValueError):
    """A checkpoint of an earlier layout: not damaged, but not resumable by this version."""


DIGEST_VERSION = 2  # 1 hashed the datasets only; 2 hashes every object and attribute
# The attributes of /checkpoint that hold the digest itself.
_DIGEST_ATTRS = frozenset({"sha256", "digest_version"})


def _digest(f: h5py.File) -> str:
    """SHA-256 over the whole file, except the digest's own two attributes.

    Every group and dataset (its path, kind, dtype and shape, in name order), every
    attribute of each (name, dtype, shape, value) and every dataset's bytes (read in
    blocks of rows). So a changed attribute (the checkpoint's ``round``, a recorded root
    attribute of run.h5), a renamed, added or removed object or a reinterpreted dtype is a
    mismatch, and a damaged checkpoint is never resumed from; damaged HDF5 metadata makes
    the walk itself fail, which counts the same.
    """
    names: list[str] = []
    f.visititems(lambda name, obj: names.append(name))
    h = hashlib.sha256()
    for name in ["", *sorted(names)]:
        obj = f[name] if name else f
        if isinstance(obj, h5py.Dataset):
            h.update(_fields(b"dataset", name, obj.dtype.str, obj.shape))
            _hash_dataset(h, obj)
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


def _hash_dataset(h, dataset: h5py.Dataset) -> None:
    """Hash a dataset's bytes as `_fields` would, reading numeric data in blocks of rows."""
    if dataset.ndim == 0 or dataset.dtype.kind in "OUS" or dataset.size == 0:
        h.update(_fields(_value_bytes(dataset[...])))
        return
    nbytes = dataset.size * dataset.dtype.itemsize
    h.update(nbytes.to_bytes(8, "little"))
    row_bytes = max(1, nbytes // dataset.shape[0])
    step = max(1, _BLOCK_BYTES // row_bytes)
    for start in range(0, dataset.shape[0], step):
        h.update(np.ascontiguousarray(dataset[start : start + step]).tobytes())


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


def _stored_width(dtype: np.dtype, length: int) -> int:
    """Bytes of one client's array in the checkpoint (bool arrays bit-packed)."""
    return (length + 7) // 8 if dtype == np.bool_ else length * dtype.itemsize


def _unstored(dataset: h5py.Dataset, row: np.ndarray) -> np.ndarray:
    """One client's array as the client kept it (`_write_clients` bit-packs bool arrays)."""
    if "bool_length" in dataset.attrs:
        return np.unpackbits(row, count=int(dataset.attrs["bool_length"])).astype(bool)
    return np.array(row)


def _client_source(clients) -> ClientChunks | None:
    if clients is None or isinstance(clients, ClientChunks):
        return clients
    return ClientChunks.from_dict(clients) if clients else None


@dataclass
class _RunRecord:
    """What a checkpoint records of run.h5: its objects, row counts and root attributes."""

    paths: list[str]
    rows: list[int]
    attrs: dict  # name -> (value, dtype)
    text_bytes: int

    @classmethod
    def of(cls, run_path: Path) -> _RunRecord:
        paths: list[str] = []
        with h5py.File(run_path, "r") as f:
            f.visit(paths.append)
            paths.sort()
            rows = []
            for p in paths:
                obj = f[p]
                growing = isinstance(obj, h5py.Dataset) and obj.maxshape[:1] == (None,)
                rows.append(obj.shape[0] if growing else -1)
            attrs = {k: (f.attrs[k], f.attrs.get_id(k).dtype) for k in f.attrs}
        # The attributes' values, and /checkpoint/run: fixed-width paths and int64 rows.
        width = max(map(len, paths), default=0)
        text = sum(len(_value_bytes(v)) for v, _ in attrs.values()) + len(paths) * (width + 8)
        return cls(paths, rows, attrs, text)


def checkpoint_bytes(state: Checkpoint, record_bytes: int = 0) -> int:
    """An upper bound on the bytes of the checkpoint file of ``state``.

    ``record_bytes``: the bytes of the run record (paths and root attributes' values).
    """
    arrays = [state.weights, state.mask, *state.algorithm.values()]
    data = sum(np.asarray(a).nbytes for a in arrays if a is not None)
    clients = _client_source(state.clients)
    objects = len(arrays) + 8
    if clients is not None:
        data += clients.count * clients.row_bytes
        objects += len(clients.arrays) + 1
    return 65536 + data + 4096 * objects + 2 * record_bytes


def write_checkpoint(out_dir: Path, state: Checkpoint, reserve=None) -> Path:
    """Write the checkpoint of ``state`` atomically; returns the file written.

    ``state.clients`` may be `ClientChunks`: their chunks are written as they come, so
    the client state is never whole in memory. ``reserve(path, nbytes)``, when given,
    makes room for the whole checkpoint in its file before anything is written (see
    `hpc_fedprune.store.rundir`). On any failure (a full disk, say) the temporary file is
    removed and the checkpoints already there stay as they were.
    """
    out_dir = Path(out_dir)
    tmp = out_dir / (CHECKPOINT + ".tmp")
    clients = _client_source(state.clients)
    try:
        record = _RunRecord.of(out_dir / "run.h5")
        h5py.File(tmp, "w").close()
        if reserve is not None:
            reserve(tmp, checkpoint_bytes(state, record.text_bytes))
        with h5py.File(tmp, "a") as f:
            for key, (value, dtype) in record.attrs.items():
                f.attrs.create(key, value, dtype=dtype)
            g = f.create_group("checkpoint")
            g.attrs["round"] = int(state.round)
            g.attrs["format"] = CHECKPOINT_FORMAT
            g.create_dataset("weights", data=state.weights)
            if state.mask is not None:
                g.create_dataset("mask", data=np.packbits(state.mask))
            algo = g.create_group("algorithm")
            for key in sorted(state.algorithm):
                value = state.algorithm[key]
                if value is not None:
                    algo.create_dataset(key, data=np.asarray(value))
            _write_clients(g.create_group("clients"), clients)
            run = g.create_group("run")
            run.create_dataset("paths", data=np.array(record.paths, dtype=np.bytes_))
            run.create_dataset("rows", data=np.array(record.rows, dtype=np.int64))
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


def _write_clients(group: h5py.Group, clients: ClientChunks | None) -> None:
    """``id`` and one ``(clients, width)`` dataset per state array, filled chunk by chunk."""
    count = 0 if clients is None else clients.count
    group.create_dataset("id", shape=(count,), dtype=np.int64)
    if clients is None:
        return
    targets = {}
    for name, (dtype, length) in sorted(clients.arrays.items()):
        dtype = np.dtype(dtype)
        stored = np.uint8 if dtype == np.bool_ else dtype
        width = (length + 7) // 8 if dtype == np.bool_ else length
        ds = group.create_dataset(name, shape=(count, width), dtype=stored)
        if dtype == np.bool_:
            ds.attrs["bool_length"] = int(length)
        targets[name] = (ds, dtype == np.bool_)
    row = 0
    for chunk in clients.chunks:
        ids = sorted(chunk)
        if row + len(ids) > count:
            raise ValueError(f"client state: more than the {count} clients announced")
        group["id"][row : row + len(ids)] = ids
        for i, client in enumerate(ids):  # row by row: no second copy of the chunk
            for name, (ds, packed) in targets.items():
                value = np.asarray(chunk[client][name])
                ds[row + i] = np.packbits(value) if packed else value
        row += len(ids)
    if row != count:
        raise ValueError(f"client state: {row} clients arrived, {count} announced")


def read_checkpoint(path: Path) -> Checkpoint:
    """Read and verify one checkpoint file (raises ValueError if damaged).

    The client state is verified but not read (`Checkpoint.client_chunks` streams it).

    Raises
    ------
    OldCheckpointError
        The file is a checkpoint of an earlier layout.
    ValueError
        The file is damaged.
    """
    path = Path(path)
    try:
        with h5py.File(path, "r") as f:
            g = f["checkpoint"]
            layout = int(g.attrs.get("format", 1))
            if layout != CHECKPOINT_FORMAT:
                raise OldCheckpointError(
                    f"{path} is a checkpoint of format {layout}, written by an earlier "
                    f"hpc_fedprune (this version reads format {CHECKPOINT_FORMAT}): resume "
                    "it with the version that wrote it, or start the run again"
                )
            version = g.attrs.get("digest_version", 1)
            if version != DIGEST_VERSION:
                raise ValueError(
                    f"digest version {version} (written by an older hpc_fedprune), "
                    "which cannot be verified"
                )
            weights = g["weights"][...]
            mask = None
            if "mask" in g:
                mask = np.unpackbits(g["mask"][...], count=len(weights)).astype(bool)
            algorithm = {key: g["algorithm"][key][...] for key in sorted(g["algorithm"])}
            if _digest(f) != g.attrs["sha256"]:
                raise ValueError("checksum mismatch")
            config = f.attrs.get("config")
            return Checkpoint(int(g.attrs["round"]), weights, mask, algorithm, None, path, config)
    except OldCheckpointError:
        raise
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
        Checkpoint files exist but none of them is intact, or the newest is of an
        earlier layout.
    """
    problems = []
    for name in (CHECKPOINT, PREVIOUS):
        path = Path(out_dir) / name
        if not path.exists():
            continue
        try:
            return read_checkpoint(path)
        except OldCheckpointError as exc:
            raise InputError(str(exc)) from None
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
    """Make ``run.h5`` what it was at ``checkpoint``'s round (atomic rename).

    The objects the checkpoint recorded are copied one by one from ``run.h5`` into a new
    file, the growing datasets only up to their recorded rows (in blocks), and the root
    attributes are the recorded ones. Objects made after the round are left out. Cutting
    the datasets in place instead would keep the space of the cut rows (HDF5 does not
    give space back), so run.h5 would grow at every resume; and a process killed while
    cutting could leave it unreadable.

    Raises
    ------
    InputError
        ``run.h5`` lacks objects or rows the checkpoint recorded (it is not the run
        file the checkpoint was written for).
    """
    out_dir = Path(out_dir)
    run_path, tmp = out_dir / "run.h5", out_dir / "run.h5.tmp"
    try:
        with h5py.File(checkpoint.path, "r") as ck:
            paths = [p.decode() for p in ck["checkpoint/run/paths"][...]]
            rows = ck["checkpoint/run/rows"][...].tolist()
            attrs = {k: (ck.attrs[k], ck.attrs.get_id(k).dtype) for k in ck.attrs}
        try:
            src = h5py.File(run_path, "r")
        except OSError as exc:
            cause = os.strerror(exc.errno) if exc.errno else str(exc).splitlines()[0]
            raise InputError(
                f"cannot read {run_path} to resume it ({cause}): a checkpoint holds no "
                "history, the run file is needed"
            ) from None
        with src, h5py.File(tmp, "w") as dst:
            for key, (value, dtype) in attrs.items():
                dst.attrs.create(key, value, dtype=dtype)
            dst.attrs["status"] = "running"
            for path, n in zip(paths, rows):
                _copy_object(src, dst, path, n, run_path)
        _fsync(tmp)
        os.replace(tmp, run_path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _copy_object(src: h5py.File, dst: h5py.File, path: str, rows: int, run_path: Path) -> None:
    """Copy one recorded object (a group without its members); growing datasets to ``rows``."""
    if path in dst:  # made with a parent that was copied whole
        return
    obj = src.get(path)
    if obj is None:
        raise InputError(f"{run_path} lacks /{path}, which its checkpoint recorded")
    if isinstance(obj, h5py.Group):
        out = dst.create_group(path)
    elif rows < 0:
        src.copy(obj, dst, name=path)
        return
    else:
        if obj.shape[0] < rows:
            raise InputError(
                f"{run_path}: /{path} has {obj.shape[0]} rows, its checkpoint recorded {rows}"
            )
        out = dst.create_dataset(
            path,
            shape=(rows, *obj.shape[1:]),
            maxshape=obj.maxshape,
            chunks=obj.chunks,
            dtype=obj.dtype,
            compression=obj.compression,
            compression_opts=obj.compression_opts,
        )
        row_bytes = max(1, obj.dtype.itemsize * int(np.prod(obj.shape[1:], dtype=np.int64)))
        step = max(1, _BLOCK_BYTES // row_bytes)
        for start in range(0, rows, step):
            out[start : min(rows, start + step)] = obj[start : min(rows, start + step)]
    for key in obj.attrs:
        out.attrs.create(key, obj.attrs[key], dtype=obj.attrs.get_id(key).dtype)


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
