"""The HDF5 run file (DESIGN section 6), written by rank 0 only.

The file is opened, appended to and closed once per round, so between rounds it is
always a complete, closed HDF5 file: a reader (``analyze``) can open a running run, and a
crash leaves every completed round readable with plain h5py. The layout is documented
in the README ("The run file"); ``FORMAT_VERSION`` is bumped whenever it changes.
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


def _resizable(group: h5py.Group, name: str, dtype, row_shape: tuple = (), chunk_rows: int = 256):
    """A dataset that grows along its first axis, created on first use."""
    if name in group:
        return group[name]
    return group.create_dataset(
        name,
        shape=(0, *row_shape),
        maxshape=(None, *row_shape),
        dtype=dtype,
        chunks=(chunk_rows if not row_shape else 1, *row_shape),
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
    ) -> None:
        """Append one completed round: metrics, the global mask record, per-client records.

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
            f.attrs["rounds_done"] = int(metrics["round"])
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
            f.flush()

    def set_attrs(self, **attrs) -> None:
        with h5py.File(self.path, "a") as f:
            for key, value in attrs.items():
                f.attrs[key] = value
