"""The HDF5 run file (layout: README, "The run directory and the run file"), written by rank 0 only.

The file is opened, appended to and closed once per round, so between rounds it is
always a complete, closed HDF5 file: a reader (``analyze``) can open a running run, and a
crash leaves every completed round readable with plain h5py. The layout is documented
in the README ("The run file"); ``FORMAT_VERSION`` is bumped whenever it changes.

This module only writes; `hpc_fedprune.store.rundir.RunDir` decides when, reserves the
space a write can take first (`append_bytes`, `model_bytes`), and turns failures into
one-line errors.
"""

from __future__ import annotations

import datetime as _dt
import json
from collections.abc import Sequence
from pathlib import Path

import h5py
import numpy as np

from .. import __version__
from ..faults import maybe_fail

FORMAT_VERSION = 1

METRIC_CHUNK_ROWS = 256
# Upper bounds on what HDF5 adds besides the data (tests/unit/test_rundir.py sweeps
# file-size limits over whole runs to show that reservations of this size suffice): a new
# dataset's object header, link and chunk-index node; a split of a chunk index that gains
# an entry (a new node, perhaps a new root); and per write, the metadata blocks and heaps.
_NEW_DATASET = 4096
_INDEX_SPLIT = 8192
_PER_WRITE = 16384


def _growth_bytes(rows: int | None, new_rows: int, row_bytes: int, chunk_rows: int) -> int:
    """Bytes a dataset of ``rows`` rows (None: not created yet) takes to gain ``new_rows``."""
    chunk_bytes = chunk_rows * row_bytes
    if rows is None:
        return _NEW_DATASET + -(-new_rows // chunk_rows) * chunk_bytes
    new_chunks = -(-(rows + new_rows) // chunk_rows) - -(-rows // chunk_rows)
    return new_chunks * chunk_bytes + (_INDEX_SPLIT if new_chunks else 0)


def utc_now() -> np.bytes_:
    """The current UTC time as fixed-length ASCII ISO 8601 (for the ``heartbeat`` attribute).

    Fixed length, so rewriting it every round overwrites it in place instead of leaving
    the old value behind in the file's heap.
    """
    text = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    return np.bytes_(text.encode("ascii"))


def _resizable(group: h5py.Group, name: str, dtype, row_shape: tuple = ()):
    """A dataset that grows along its first axis, created on first use.

    Rows of one value come in chunks of `METRIC_CHUNK_ROWS`, longer rows (masks) one per
    chunk (`RunFile.append_bytes` reckons with the same shapes).
    """
    found = group.get(name)
    if found is not None:
        return found
    return group.create_dataset(
        name,
        shape=(0, *row_shape),
        maxshape=(None, *row_shape),
        dtype=dtype,
        chunks=(METRIC_CHUNK_ROWS if not row_shape else 1, *row_shape),
    )


def _append(dataset: h5py.Dataset, rows: np.ndarray) -> None:
    n = dataset.shape[0]
    dataset.resize(n + len(rows), axis=0)
    dataset[n:] = rows


class RunFile:
    """Writer of one run's ``run.h5``.

    Parameters
    ----------
    path : Path
        The file to create.
    """

    def __init__(self, path: Path) -> None:
        self.path = Path(path)

    def open(self, mode: str = "a") -> h5py.File:
        return h5py.File(self.path, mode)

    def append_bytes(
        self,
        metrics: dict[str, float],
        *,
        mask_record: tuple[int, dict[str, np.ndarray]] | None = None,
        uplink: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        client_masks: Sequence[tuple[int, int, dict[str, np.ndarray]]] = (),
        layers: dict[str, np.ndarray] | None = None,
        privacy: Sequence[dict] = (),
    ) -> int:
        """An upper bound on the bytes `append_round` with these arguments adds to the file.

        Reads the file's current state: a dataset takes space when it is created or when
        its new rows need a new chunk (with room for a split of its chunk index); rows
        that fit an allocated chunk take none.
        """
        growth: list[tuple[str, int, int, int]] = []  # (path, new rows, row bytes, chunk rows)
        for name in metrics:
            growth.append((f"metrics/{name}", 1, 8, METRIC_CHUNK_ROWS))
        if mask_record is not None:
            for name, m in mask_record[1].items():
                growth.append((f"masks/{name}", 1, (m.size + 7) // 8, 1))
            growth.append(("masks/rounds", 1, 8, METRIC_CHUNK_ROWS))
        if uplink is not None:
            for name in ("round", "client", "bytes"):
                growth.append((f"clients/uplink/{name}", len(uplink[0]), 8, METRIC_CHUNK_ROWS))
        if client_masks:
            n = len(client_masks)
            for name, m in client_masks[0][2].items():
                growth.append((f"clients/masks/{name}", n, (m.size + 7) // 8, 1))
            for name in ("round", "client"):
                growth.append((f"clients/masks/{name}", n, 8, METRIC_CHUNK_ROWS))
        for name, row in (layers or {}).items():
            growth.append((f"metrics_layers/{name}", 1, 8 * row.size, 1))
        if privacy:
            for name in privacy[0]:
                growth.append((f"privacy/{name}", len(privacy), 16, METRIC_CHUNK_ROWS))
        total = _PER_WRITE
        with h5py.File(self.path, "r") as f:
            for path, new_rows, row_bytes, chunk_rows in growth:
                ds = f.get(path)
                rows = None if ds is None else ds.shape[0]
                total += _growth_bytes(rows, new_rows, row_bytes, chunk_rows)
        return total

    @staticmethod
    def model_bytes(numel: int, with_mask: bool) -> int:
        """An upper bound on the bytes `write_model` adds for a model of ``numel`` entries."""
        return _PER_WRITE + 2 * _NEW_DATASET + 4 * numel + (numel + 7) // 8 * with_mask

    def create(
        self, *, attrs: dict, layout, prunable: np.ndarray, partition: dict[str, np.ndarray]
    ) -> None:
        """Create the file with its root attributes, the model layout and partition facts."""
        with h5py.File(self.path, "w") as f:
            f.attrs["format_version"] = FORMAT_VERSION
            f.attrs["hpc_fedprune_version"] = __version__
            f.attrs["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
            f.attrs["status"] = "running"
            f.attrs["rounds_done"] = 0
            f.attrs["heartbeat"] = utc_now()
            for key, value in attrs.items():
                f.attrs[key] = value
            f.require_group("metrics")
            model = f.require_group("model")
            model.attrs["names"] = np.array([t.name for t in layout], dtype=h5py.string_dtype())
            model.attrs["shapes"] = json.dumps([list(t.shape) for t in layout])
            model.attrs["offsets"] = np.array([t.offset for t in layout], dtype=np.int64)
            model.create_dataset("prunable", data=np.packbits(prunable))
            model["prunable"].attrs["numel"] = len(prunable)
            part = f.require_group("partition")
            for key, value in partition.items():
                part.create_dataset(key, data=value)

    def append_round(
        self,
        metrics: dict[str, float],
        *,
        mask_record: tuple[int, dict[str, np.ndarray]] | None = None,
        uplink: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
        client_masks: Sequence[tuple[int, int, dict[str, np.ndarray]]] = (),
        layers: dict[str, np.ndarray] | None = None,
        privacy: Sequence[dict] = (),
    ) -> None:
        """Append one completed round: metrics, masks, per-client records, attack results.

        Parameters
        ----------
        metrics : dict
            One value per metric name (the first round fixes the set of names).
        mask_record : (round, {tensor name: bool mask}), optional
            Written to ``/masks`` as bit-packed rows.
        uplink : (round, client, bytes) arrays, optional
            Each participating client's encoded uplink size.
        client_masks : sequence of (round, client, {tensor name: bool mask})
            Client-local masks, bit-packed, to ``/clients/masks``.
        layers : {name: int64 array, one entry per layer}, optional
            Per-layer values of the round, one row each in ``/metrics_layers/<name>``.
        privacy : sequence of dict
            Membership-inference rows of the round (`append_privacy`).

        The ``heartbeat`` attribute becomes the current time and ``rounds_done`` the round.
        """
        with h5py.File(self.path, "a") as f:
            group = f["metrics"]
            for name, value in metrics.items():
                dtype = np.int64 if name in ("round", "clients") else np.float64
                _append(_resizable(group, name, dtype), np.array([value], dtype=dtype))
            if layers:
                per_layer = f.require_group("metrics_layers")
                for name, row in layers.items():
                    _append(_resizable(per_layer, name, np.int64, row_shape=row.shape), row[None])
            maybe_fail("history", 0, int(metrics["round"]))
            if mask_record is not None:
                rnd, masks = mask_record
                self._append_masks(f.require_group("masks"), np.array([rnd]), [masks], "rounds")
            if uplink is not None:
                up = f.require_group("clients").require_group("uplink")
                for name, values in zip(("round", "client", "bytes"), uplink):
                    _append(_resizable(up, name, np.int64), np.asarray(values, dtype=np.int64))
            if client_masks:
                group = f.require_group("clients").require_group("masks")
                rounds = np.array([r for r, _, _ in client_masks])
                clients = np.array([c for _, c, _ in client_masks])
                _append(_resizable(group, "client", np.int64), clients)
                self._append_masks(group, rounds, [m for _, _, m in client_masks], "round")
            if privacy:
                _append_privacy(f, privacy)
            f.attrs.modify("rounds_done", np.int64(metrics["round"]))
            f.attrs.modify("heartbeat", utc_now())
            f.flush()

    @staticmethod
    def _append_masks(
        group: h5py.Group,
        rounds: np.ndarray,
        records: list[dict[str, np.ndarray]],
        rounds_name: str,
    ) -> None:
        # Tensors first, rounds last: a crash in between leaves rounds shorter, never longer.
        for name in records[0]:
            first = records[0][name]
            row_bytes = (first.size + 7) // 8
            ds = _resizable(group, name, np.uint8, row_shape=(row_bytes,))
            if "shape" not in ds.attrs:
                ds.attrs["shape"] = np.array(first.shape, dtype=np.int64)
                ds.attrs["numel"] = int(first.size)
            rows = np.stack([np.packbits(r[name].reshape(-1)) for r in records])
            _append(ds, rows)
        _append(_resizable(group, rounds_name, np.int64), rounds)

    def write_model(self, weights: np.ndarray, mask: np.ndarray | None) -> None:
        """The final global weights (and mask) under ``/model``."""
        with h5py.File(self.path, "a") as f:
            model = f["model"]
            for name in ("flat", "mask"):
                if name in model:
                    del model[name]
            flat = model.create_dataset("flat", data=np.asarray(weights, dtype=np.float32))
            for key in ("names", "shapes", "offsets"):
                flat.attrs[key] = model.attrs[key]
            if mask is not None:
                ds = model.create_dataset("mask", data=np.packbits(mask))
                ds.attrs["numel"] = len(mask)

    def append_privacy(self, rows: Sequence[dict]) -> None:
        """Append membership-inference results, one row per (round, attack), to ``/privacy``.

        Every row has the same keys; ``attack`` is a name (fixed-length ASCII, at most 16
        bytes), ``round``, ``members`` and ``nonmembers`` integers, the rest floats. Works
        on any HDF5 file (the ``privacy`` command writes the same group to its own file).
        """
        if not rows:
            return
        with h5py.File(self.path, "a") as f:
            _append_privacy(f, rows)
            f.flush()

    def set_attrs(self, **attrs) -> None:
        """Set root attributes; ``heartbeat`` is rewritten in place (fixed length)."""
        with h5py.File(self.path, "a") as f:
            for key, value in attrs.items():
                if key == "heartbeat" and key in f.attrs:
                    f.attrs.modify(key, value)
                else:
                    f.attrs[key] = value


def _append_privacy(f: h5py.File, rows: Sequence[dict]) -> None:
    group = f.require_group("privacy")
    for name in rows[0]:
        values = [row[name] for row in rows]
        if name == "attack":
            # Fixed-length bytes: variable-length strings read back as object
            # arrays, which the checkpoint digest cannot hash reproducibly.
            dtype = np.dtype("S16")
        elif name in ("round", "members", "nonmembers"):
            dtype = np.int64
        else:
            dtype = np.float64
        _append(_resizable(group, name, dtype), np.array(values, dtype=dtype))
