"""Read a run file (``run.h5``, format_version 1) into plain numpy arrays.

`load_run` reads what is small (root attributes, the per-round metrics, the list of mask
tensors) and closes the file. Masks are large (one bit per weight per record), so `Run`
hands them out one record at a time through iterators that reopen the file; the whole
history is never in memory.

A file may belong to a run that is still going or that crashed: datasets can be shorter
than ``rounds_planned``, and a crash between two writes can leave one dataset a row longer
than its siblings. Every group is therefore cut to the shortest of its datasets, the same
way everywhere, so that row i means the same round in every array.

A file may also be damaged or forged. HDF5 reads chunks that were never written as
zeros, so a dataset's shape alone could make a read allocate any amount: every read is
first checked against the bytes the file really stores for the dataset (`_check_holds`),
sizes that attributes claim are checked against the data they describe, and a file that
fails a check is refused with an `InputError` (exit status 2) naming the file.

This is the one reader of run files in the package: the command line's summary line, the
``privacy`` command, ``analyze``/``compare`` and the run directory's resume all read
through it (the checkpoint's own group is read by ``store/checkpoint.py``).

Only numpy and h5py are imported: the analysis must start fast and run on a laptop
without torch or MPI.
"""

from __future__ import annotations

import datetime as _dt
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import h5py
import numpy as np

from ..errors import InputError

#: The newest run-file layout this reader understands.
SUPPORTED_FORMAT_VERSION = 1

RUN_FILE_NAME = "run.h5"

# Datasets inside /masks and /clients/masks that index the rows instead of holding a tensor.
_MASK_INDEX_NAMES = frozenset({"rounds"})
_CLIENT_MASK_INDEX_NAMES = frozenset({"round", "client"})
# The most a filtered (compressed) chunk can expand: deflate's limit is about 1032:1.
_MAX_EXPANSION = 1100
# Dataset kinds read into numpy arrays: numbers, booleans, fixed-length bytes.
_READABLE_KINDS = frozenset("biufcS")


@dataclass(frozen=True)
class MaskTensor:
    """One prunable tensor whose masks are recorded.

    Attributes
    ----------
    name : str
        Parameter name as in the model, e.g. ``"conv1.weight"``.
    shape : tuple of int
        Shape of the tensor; the stored bits are its C-order flattening.
    numel : int
        Number of elements (bits that matter in each packed row).
    """

    name: str
    shape: tuple[int, ...]
    numel: int

    @property
    def row_bytes(self) -> int:
        """Length of one packed row in bytes (``numel`` bits rounded up)."""
        return (self.numel + 7) // 8


@dataclass(frozen=True)
class MaskRecord:
    """The global masks of all prunable tensors at one recorded round.

    Attributes
    ----------
    index : int
        Row number of this record in ``/masks/<tensor>``.
    round : int
        Round (1-based) after which the masks were recorded.
    packed : Mapping[str, numpy.ndarray]
        Per tensor name, the ``np.packbits`` row (uint8) as stored.
    tensors : Mapping[str, MaskTensor]
        Shapes and sizes, to unpack the rows.
    """

    index: int
    round: int
    packed: Mapping[str, np.ndarray]
    tensors: Mapping[str, MaskTensor]

    def mask(self, name: str) -> np.ndarray:
        """The boolean mask of one tensor (True = kept), in the tensor's shape."""
        t = self.tensors[name]
        return np.unpackbits(self.packed[name], count=t.numel).astype(bool).reshape(t.shape)


@dataclass(frozen=True)
class ClientMaskRound:
    """The client-local masks of every client that recorded one in a round.

    Attributes
    ----------
    round : int
        Round (1-based).
    clients : numpy.ndarray
        Client ids (int64), one per row of each array in ``packed``.
    packed : Mapping[str, numpy.ndarray]
        Per tensor name, a uint8 array of shape ``(len(clients), row_bytes)``.
    tensors : Mapping[str, MaskTensor]
        Shapes and sizes, to unpack the rows.
    """

    round: int
    clients: np.ndarray
    packed: Mapping[str, np.ndarray]
    tensors: Mapping[str, MaskTensor]

    def masks(self, name: str) -> np.ndarray:
        """Boolean masks of one tensor, shape ``(len(clients), *tensor.shape)``."""
        t = self.tensors[name]
        bits = np.unpackbits(self.packed[name], axis=1, count=t.numel).astype(bool)
        return bits.reshape((len(self.clients), *t.shape))


@dataclass(frozen=True)
class LayerCosts:
    """Per-layer cost of a run.

    Attributes
    ----------
    layers : list of str
        Module names.
    params, flops : numpy.ndarray
        Dense parameters and FLOPs per sample, per layer (int64).
    params_effective, flops_effective : numpy.ndarray or None
        ``(rounds, layers)`` effective counts, one row per completed round.
    """

    layers: list[str]
    params: np.ndarray
    flops: np.ndarray
    params_effective: np.ndarray | None
    flops_effective: np.ndarray | None


@dataclass(frozen=True)
class Run:
    """A run file, read up to what is small; masks are streamed on demand.

    Attributes
    ----------
    path : pathlib.Path
        The ``run.h5`` file.
    attrs : dict
        All root attributes, decoded to Python values (str, int, float, list).
    format_version : int
        Layout version of the file.
    algorithm, dataset, model, task, status : str
        Root attributes of the same names (``"unknown"`` where missing).
    num_clients, rounds_planned : int or None
        Root attributes of the same names (None where missing).
    rounds_done : int
        Last completed round according to ``/metrics/round`` (the attribute where that
        dataset is missing): the number the metrics can back up.
    metrics : dict of str to numpy.ndarray
        The per-round metrics as columns: every 1-D dataset of ``/metrics`` (``round``
        first), all cut to the same length, so that ``metrics[name][i]`` is the value of
        round ``metrics["round"][i]``. `row` gives one round as a dict, `to_pandas` the
        whole table as a DataFrame.
    mask_tensors : tuple of MaskTensor
        Tensors in ``/masks``, in the model's flat-buffer order where known.
    mask_rounds : numpy.ndarray
        Round of each usable mask record (cut to the rows every tensor has).
    client_mask_tensors : tuple of MaskTensor
        Tensors in ``/clients/masks``.
    client_mask_rows : int
        Number of usable rows in ``/clients/masks``.
    """

    path: Path
    attrs: dict[str, Any]
    format_version: int
    algorithm: str
    dataset: str
    model: str
    task: str
    status: str
    num_clients: int | None
    rounds_planned: int | None
    rounds_done: int
    metrics: dict[str, np.ndarray]
    mask_tensors: tuple[MaskTensor, ...] = ()
    mask_rounds: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    client_mask_tensors: tuple[MaskTensor, ...] = ()
    client_mask_rows: int = 0

    @property
    def heartbeat(self) -> _dt.datetime | None:
        """UTC time of the run's last write to the file (a completed round, a status).

        None for files written before the attribute existed, or with an unreadable value.
        """
        text = self.attrs.get("heartbeat")
        if not isinstance(text, str):
            return None
        try:
            stamp = _dt.datetime.fromisoformat(text)
        except ValueError:
            return None
        return stamp if stamp.tzinfo else stamp.replace(tzinfo=_dt.timezone.utc)

    @property
    def run_dir(self) -> Path:
        """The run directory (the folder holding ``run.h5``)."""
        return self.path.parent

    @property
    def name(self) -> str:
        """A short name for tables and legends: the run directory's name."""
        return self.run_dir.resolve().name or str(self.path)

    @property
    def num_rounds(self) -> int:
        """Number of rows in `metrics` (completed rounds that were recorded)."""
        return len(self.metrics.get("round", ()))

    def row(self, index: int = -1) -> dict[str, int | float]:
        """One recorded round of `metrics` as Python numbers; by default the last one.

        Raises
        ------
        IndexError
            No round with that index was recorded.
        """
        if not -self.num_rounds <= index < self.num_rounds:
            raise IndexError(f"{self.path}: round index {index} of {self.num_rounds} recorded")
        return {name: column[index].item() for name, column in self.metrics.items()}

    def to_pandas(self):
        """The per-round metrics as a pandas DataFrame: one row per round, one column per metric.

        The columns are those of `metrics`, in its order (``round`` first), with their
        dtypes; the index is the default 0..n-1. pandas is optional (not a dependency of
        hpc_fedprune).

        Raises
        ------
        ImportError
            pandas is not installed (the message says how to get it).
        """
        try:
            import pandas as pd
        except ImportError as exc:
            raise ImportError(
                "Run.to_pandas needs pandas, which hpc_fedprune does not install: "
                "pip install pandas (or use Run.metrics, a dict of numpy columns)"
            ) from exc
        return pd.DataFrame({name: np.asarray(col) for name, col in self.metrics.items()})

    @property
    def has_masks(self) -> bool:
        """True when the file holds at least one global mask record."""
        return bool(self.mask_tensors) and len(self.mask_rounds) > 0

    @property
    def has_client_masks(self) -> bool:
        """True when the file holds at least one client-local mask."""
        return bool(self.client_mask_tensors) and self.client_mask_rows > 0

    def iter_masks(self) -> Iterator[MaskRecord]:
        """Yield the global mask records in file order, one at a time.

        Only one record (one packed row per tensor) is in memory at once; the file stays
        open while the iterator is alive.
        """
        if not self.has_masks:
            return
        tensors = {t.name: t for t in self.mask_tensors}
        with _open(self.path) as f, _reading(self.path):
            group = f["masks"]
            datasets = {name: group[name] for name in tensors}
            for i, rnd in enumerate(self.mask_rounds.tolist()):
                with _reading(self.path):
                    packed = {name: ds[i] for name, ds in datasets.items()}
                yield MaskRecord(index=i, round=int(rnd), packed=packed, tensors=tensors)

    def iter_client_masks(self) -> Iterator[ClientMaskRound]:
        """Yield the client-local masks grouped by round, one round at a time.

        Rounds come in increasing order; within a round, rows keep their file order.
        """
        if not self.has_client_masks:
            return
        tensors = {t.name: t for t in self.client_mask_tensors}
        n = self.client_mask_rows
        with _open(self.path) as f, _reading(self.path):
            group = f["clients/masks"]
            rounds = np.asarray(group["round"][:n], dtype=np.int64)
            clients = np.asarray(group["client"][:n], dtype=np.int64)
            datasets = {name: group[name] for name in tensors}
            for rnd in np.unique(rounds).tolist():
                rows = np.flatnonzero(rounds == rnd)
                # Rows of one round are normally contiguous: a slice reads much faster
                # than h5py's point selection.
                if rows[-1] - rows[0] + 1 == len(rows):
                    sel: slice | np.ndarray = slice(int(rows[0]), int(rows[-1]) + 1)
                else:
                    sel = rows
                with _reading(self.path):
                    packed = {name: np.asarray(ds[sel]) for name, ds in datasets.items()}
                yield ClientMaskRound(
                    round=int(rnd), clients=clients[rows], packed=packed, tensors=tensors
                )

    def client_uplink(self) -> dict[str, np.ndarray] | None:
        """Per (round, client) uplink sizes: keys ``round``, ``client``, ``bytes``.

        Returns None when the file has no ``/clients/uplink`` group.
        """
        return self._read_group("clients/uplink", ("round", "client", "bytes"))

    def partition(self) -> dict[str, np.ndarray] | None:
        """Client data partition: ``sizes`` (per client) and ``label_counts`` if present.

        Returns None when the file has no ``/partition`` group.
        """
        with _open(self.path) as f, _reading(self.path):
            if "partition" not in f:
                return None
            g = f["partition"]
            return {k: _read(self.path, g[k]) for k in ("sizes", "label_counts") if k in g}

    def final_model(self) -> tuple[np.ndarray, np.ndarray | None] | None:
        """The final global weights (float32) and their mask (bool), or None if absent.

        Raises
        ------
        InputError
            The weights are not a vector the file holds, or the mask's ``numel`` does not
            match its packed bits or the weights.
        """
        with _open(self.path) as f, _reading(self.path):
            if "model/flat" not in f:
                return None
            ds = _dataset(self.path, f, "model/flat")
            if ds.ndim != 1 or ds.dtype.kind != "f":
                raise InputError(
                    f"{self.path}: /model/flat is {ds.dtype} of shape {ds.shape}, "
                    "not a vector of weights"
                )
            flat = _read(self.path, ds)
            mask = None
            if "model/mask" in f:
                ds = _dataset(self.path, f, "model/mask")
                packed = _read(self.path, ds).reshape(-1)
                numel = _opt_int(_plain(ds.attrs.get("numel", flat.size)))
                if numel != flat.size or not 8 * len(packed) - 8 < numel <= 8 * len(packed):
                    raise InputError(
                        f"{self.path}: /model/mask claims {numel!r} entries in "
                        f"{len(packed)} packed bytes for {flat.size} weights"
                    )
                mask = np.unpackbits(packed, count=numel).astype(bool)
            return flat, mask

    def layer_costs(self) -> LayerCosts | None:
        """``/model/cost`` and ``/metrics_layers``: per-layer dense and effective counts.

        Returns None when the file has no ``/model/cost`` group (runs of earlier versions).
        """
        with _open(self.path) as f, _reading(self.path):
            if "model/cost" not in f:
                return None
            g = f["model/cost"]
            params = _read(self.path, _dataset(self.path, f, "model/cost/params"))
            names = _dataset(self.path, f, "model/cost/layer")
            if names.shape != params.shape:  # strings: bounded by the numeric table instead
                raise InputError(
                    f"{self.path}: /model/cost/layer has shape {names.shape}, "
                    f"/model/cost/params {params.shape}"
                )
            layers = [v.decode() if isinstance(v, bytes) else str(v) for v in names[...]]
            per_round: dict[str, np.ndarray] = {}
            for name in ("params_effective", "flops_effective"):
                path = f"metrics_layers/{name}"
                if path in f:
                    per_round[name] = _read(self.path, _dataset(self.path, f, path))
            return LayerCosts(
                layers,
                params,
                _read(self.path, g["flops"]),
                per_round.get("params_effective"),
                per_round.get("flops_effective"),
            )

    def _read_group(self, name: str, keys: tuple[str, ...]) -> dict[str, np.ndarray] | None:
        with _open(self.path) as f, _reading(self.path):
            if name not in f:
                return None
            return _read_columns(self.path, f[name], keys)


def read_table(path: str | Path, group: str) -> dict[str, np.ndarray] | None:
    """The 1-D datasets of one group of any HDF5 file, cut to a common length.

    For files beside a run that are not run files themselves (``privacy.h5``). Reads are
    bounded as in `load_run`. Returns None when the group is absent.

    Raises
    ------
    InputError
        Missing, unreadable or inconsistent file (one line naming it).
    """
    file_path = Path(path)
    with _open(file_path) as f, _reading(file_path):
        if group not in f or not isinstance(f[group], h5py.Group):
            return None
        g = f[group]
        names = tuple(k for k, v in g.items() if isinstance(v, h5py.Dataset) and v.ndim == 1)
        return _read_columns(file_path, g, names)


def resolve_run_path(path: str | Path) -> Path:
    """Turn a run directory or a ``run.h5`` path into the path of the run file.

    Raises
    ------
    InputError
        If the path does not exist, or is a directory without ``run.h5``.
    """
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if p.is_dir():
        candidate = p / RUN_FILE_NAME
        if not candidate.is_file():
            raise InputError(f"{p}: not a run directory (no {RUN_FILE_NAME} in it)")
        return candidate
    return p


def load_run(path: str | Path) -> Run:
    """Open a run file and read its metadata, metrics and the index of its masks.

    Parameters
    ----------
    path : str or pathlib.Path
        A run directory or its ``run.h5``.

    Returns
    -------
    Run
        Plain numpy arrays and attributes; masks are read later through its iterators.

    Raises
    ------
    InputError
        Missing path, not an HDF5 file, not a run file (no ``format_version``), a
        ``format_version`` newer than `SUPPORTED_FORMAT_VERSION`, or a file that cannot be
        read (truncated or corrupt). The message is one line and names the file.
    """
    file_path = resolve_run_path(path)
    with _open(file_path) as f, _reading(file_path):
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
        version = _check_format_version(file_path, attrs)
        metrics = _read_metrics(file_path, f)
        tensor_order = _model_tensor_order(f)
        mask_tensors, mask_rounds = _read_mask_index(file_path, f, tensor_order)
        client_tensors, client_rows = _read_client_mask_index(file_path, f, tensor_order)

    rounds = metrics.get("round")
    if rounds is not None and len(rounds) > 0:
        rounds_done = int(rounds[-1])
    else:
        rounds_done = _opt_int(attrs.get("rounds_done")) or 0
    return Run(
        path=file_path,
        attrs=attrs,
        format_version=version,
        algorithm=str(attrs.get("algorithm", "unknown")),
        dataset=str(attrs.get("dataset", "unknown")),
        model=str(attrs.get("model", "unknown")),
        task=str(attrs.get("task", "classification")),
        status=str(attrs.get("status", "unknown")),
        num_clients=_opt_int(attrs.get("num_clients")),
        rounds_planned=_opt_int(attrs.get("rounds_planned")),
        rounds_done=rounds_done,
        metrics=metrics,
        mask_tensors=mask_tensors,
        mask_rounds=mask_rounds,
        client_mask_tensors=client_tensors,
        client_mask_rows=client_rows,
    )


# --- helpers -----------------------------------------------------------------------------


class _open:
    """Open a run file read-only, turning every way it can fail into one InputError."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.file: h5py.File | None = None

    def __enter__(self) -> h5py.File:
        if not self.path.is_file():
            raise InputError(f"{self.path}: no such file")
        if not h5py.is_hdf5(self.path):
            raise InputError(f"{self.path}: not an HDF5 file, so not a run file")
        try:
            # locking=False: a running simulator holds the file open for writing, and the
            # point of reading a live run is to look at it while it goes.
            self.file = h5py.File(self.path, "r", locking=False)
        except OSError as e:
            raise InputError(
                f"{self.path}: cannot read (truncated or corrupt?): {_one_line(e)}"
            ) from e
        return self.file

    def __exit__(self, *exc: object) -> None:
        if self.file is not None:
            self.file.close()


def _dataset(path: Path, f: h5py.File, name: str) -> h5py.Dataset:
    obj = f[name]
    if not isinstance(obj, h5py.Dataset):
        raise InputError(f"{path}: /{name} is not a dataset")
    return obj


def _check_holds(path: Path, ds: h5py.Dataset, rows: int | None = None) -> int:
    """Refuse a dataset whose first ``rows`` rows (all by default) the file does not hold.

    A chunk that was never written reads as fill values, so a shape alone proves nothing:
    the bytes to be read must be within what the dataset stores (times the most a filter
    can expand them), plus one chunk of slack for the last row of a crashed append, and
    what it stores must be within the file. Returns the number of rows.
    """
    if ds.dtype.kind not in _READABLE_KINDS or ds.dtype.itemsize == 0:
        raise InputError(f"{path}: {ds.name} has type {ds.dtype}, not numbers")
    total = ds.shape[0] if ds.shape else 1
    n = total if rows is None else min(rows, total)
    claimed = n * math.prod(ds.shape[1:]) * ds.dtype.itemsize
    stored = ds.id.get_storage_size()
    file_size = path.stat().st_size
    if stored > file_size:
        raise InputError(
            f"{path}: {ds.name} claims {stored} stored bytes in a file of {file_size} bytes "
            "(damaged or forged)"
        )
    filtered = ds.chunks is not None and ds.id.get_create_plist().get_nfilters() > 0
    slack = 0
    if ds.chunks is not None:
        slack = min(math.prod(ds.chunks) * ds.dtype.itemsize, max(file_size, 1 << 20))
    if claimed > stored * (_MAX_EXPANSION if filtered else 1) + slack:
        raise InputError(
            f"{path}: {ds.name} claims {n} rows ({claimed} bytes) but the file holds "
            f"{stored} bytes of it (damaged or forged)"
        )
    return n


def _read(path: Path, ds: h5py.Dataset, rows: int | None = None) -> np.ndarray:
    """The first ``rows`` rows of a dataset (all by default), checked by `_check_holds`."""
    n = _check_holds(path, ds, rows)
    if not ds.shape:
        return np.asarray(ds[()])
    return np.asarray(ds[:n])


def _read_columns(path: Path, g: h5py.Group, keys) -> dict[str, np.ndarray]:
    """Datasets ``keys`` of a group (those present), cut to the shortest, bounded reads."""
    present = [k for k in keys if k in g and isinstance(g[k], h5py.Dataset) and g[k].ndim >= 1]
    n = min((_check_holds(path, g[k]) for k in present), default=0)
    return {k: _read(path, g[k], n) for k in present}


class _reading:
    """Turn low-level read failures inside a block into InputError naming the file."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, exc_type: type | None, exc: BaseException | None, tb: object) -> bool:
        # OSError is what h5py raises for unreadable chunks or metadata; KeyError for a
        # dangling link; MemoryError is the last line of defence behind the size checks.
        # Our own InputError passes through unchanged.
        if exc_type is not None and issubclass(exc_type, (OSError, KeyError)):
            raise InputError(
                f"{self.path}: cannot read (truncated or corrupt?): {_one_line(exc)}"
            ) from exc
        if exc_type is not None and issubclass(exc_type, MemoryError):
            raise InputError(f"{self.path}: too large to read into memory") from exc
        return False


def _one_line(e: BaseException | None) -> str:
    text = " ".join(str(e).split()) if e is not None else ""
    return text or type(e).__name__


def _plain(value: Any) -> Any:
    """An HDF5 attribute value as a plain Python value."""
    if isinstance(value, bytes):
        return value.decode("utf-8", "replace")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def _opt_int(value: Any) -> int | None:
    try:
        return int(value) if value is not None else None
    except (TypeError, ValueError):
        return None


def _check_format_version(path: Path, attrs: dict[str, Any]) -> int:
    if "format_version" not in attrs:
        raise InputError(f"{path}: not a hpc_fedprune run file (no format_version attribute)")
    raw = attrs["format_version"]
    # Accept an int (or an integral float, as some writers store numbers); refuse the rest.
    integral = isinstance(raw, int) or (isinstance(raw, float) and raw.is_integer())
    if isinstance(raw, bool) or not integral:
        raise InputError(f"{path}: format_version {raw!r} is not an integer")
    version = int(raw)
    if version < 1:
        raise InputError(f"{path}: format_version {version} is not a valid run-file version")
    if version > SUPPORTED_FORMAT_VERSION:
        raise InputError(
            f"{path}: written with a newer run-file format (format_version {version}); "
            f"this hpc_fedprune reads up to {SUPPORTED_FORMAT_VERSION}: upgrade it"
        )
    return version


def _read_metrics(path: Path, f: h5py.File) -> dict[str, np.ndarray]:
    if "metrics" not in f:
        return {}
    group = f["metrics"]
    names = [
        k
        for k, v in group.items()
        if isinstance(v, h5py.Dataset) and v.ndim == 1 and v.dtype.kind in "biuf"
    ]
    # Cut to the shortest: a crash between appends leaves some metrics a row ahead.
    metrics = _read_columns(path, group, names)
    if "round" in metrics:
        # Put `round` first so that tables built from this dict start with it.
        metrics = {"round": metrics.pop("round"), **metrics}
    return metrics


def _model_tensor_order(f: h5py.File) -> list[str]:
    """Parameter names in flat-buffer order, to list layers in model order, not A-Z.

    ``/model/flat`` carries them once the run has finished; while it runs, the writer
    keeps them on the ``/model`` group.
    """
    for path in ("model/flat", "model"):
        if path in f and "names" in f[path].attrs:
            names = _plain(f[path].attrs["names"])
            if isinstance(names, list):
                return [str(n) for n in names]
    return []


def _ordered(names: list[str], order: list[str]) -> list[str]:
    rank = {n: i for i, n in enumerate(order)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _tensor_info(path: Path, ds: h5py.Dataset, name: str) -> MaskTensor:
    shape_attr = ds.attrs.get("shape")
    numel_attr = ds.attrs.get("numel")
    if shape_attr is not None:
        shape = tuple(int(s) for s in np.atleast_1d(_shape_value(shape_attr)))
    elif numel_attr is not None:
        shape = (int(numel_attr),)
    else:
        raise InputError(f"{path}: mask dataset {ds.name} has neither 'shape' nor 'numel'")
    numel = int(numel_attr) if numel_attr is not None else math.prod(shape)
    if math.prod(shape) != numel:
        raise InputError(f"{path}: mask dataset {ds.name}: shape {shape} does not hold {numel}")
    t = MaskTensor(name=name, shape=shape, numel=numel)
    if len(ds.shape) != 2 or ds.shape[1] != t.row_bytes:
        raise InputError(
            f"{path}: mask dataset {ds.name} has shape {ds.shape}; expected (records, "
            f"{t.row_bytes}) for {numel} packed bits"
        )
    return t


def _shape_value(value: Any) -> Any:
    # The writer might store the shape as a JSON string instead of an int array.
    if isinstance(value, (str, bytes)):
        return json.loads(value)
    return value


def _read_mask_index(
    path: Path, f: h5py.File, order: list[str]
) -> tuple[tuple[MaskTensor, ...], np.ndarray]:
    empty = np.zeros(0, dtype=np.int64)
    if "masks" not in f or "rounds" not in f["masks"]:
        return (), empty
    group = f["masks"]
    names = [
        k for k, v in group.items() if isinstance(v, h5py.Dataset) and k not in _MASK_INDEX_NAMES
    ]
    tensors = tuple(_tensor_info(path, group[n], n) for n in _ordered(names, order))
    rounds = _read(path, group["rounds"]).astype(np.int64).reshape(-1)
    # A crash mid-record leaves `rounds` or some tensor a row ahead: use the common length.
    n = min([len(rounds), *(group[t.name].shape[0] for t in tensors)])
    for t in tensors:
        _check_holds(path, group[t.name], n)  # mask records are read later, one at a time
    return tensors, rounds[:n]


def _read_client_mask_index(
    path: Path, f: h5py.File, order: list[str]
) -> tuple[tuple[MaskTensor, ...], int]:
    if "clients/masks" not in f:
        return (), 0
    group = f["clients/masks"]
    if not all(k in group for k in _CLIENT_MASK_INDEX_NAMES):
        return (), 0
    names = [
        k
        for k, v in group.items()
        if isinstance(v, h5py.Dataset) and k not in _CLIENT_MASK_INDEX_NAMES
    ]
    tensors = tuple(_tensor_info(path, group[n], n) for n in _ordered(names, order))
    n = min(
        [
            _check_holds(path, group["round"]),
            _check_holds(path, group["client"]),
            *(group[t.name].shape[0] for t in tensors),
        ]
    )
    for t in tensors:
        _check_holds(path, group[t.name], n)
    return tensors, n
