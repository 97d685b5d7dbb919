"""Readers for the standard on-disk formats, and the search for the files.

Nothing is downloaded at run time: on a cluster the compute nodes usually have no
internet, and 64 ranks fetching the same archive at once would be rude anyway. A loader
looks in a list of folders (``candidate_dirs``) and, when the files are in none of them,
raises an ``InputError`` that names every folder searched and says how to get the files.

Formats
    IDX (MNIST, Fashion-MNIST): big-endian header, magic ``0 0 <type> <ndim>``, then the
    dimensions as uint32 and the raw values; read plain or gzipped (detected from the
    content, not the name).
    CIFAR python batches: pickled dicts with ``data`` (N x 3072 uint8, channel-major) and
    ``labels`` / ``fine_labels`` / ``coarse_labels``; written by Python 2, so keys load as
    bytes. A pickle can name any function to call while it loads, so these are read with
    a restricted unpickler (`CifarUnpickler`) that builds only dicts, lists, numbers,
    strings and numpy arrays of numbers: a planted file is refused, never run.
    npz / HDF5: named arrays at the top level of the file.
"""

from __future__ import annotations

import gzip
import importlib
import io
import os
import pickle
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from ..errors import InputError

ENV_VAR = "HPC_FEDPRUNE_DATA"  # a site-wide folder holding one sub-folder per data set

# IDX type byte -> big-endian numpy dtype.
_IDX_DTYPES = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_GZIP_MAGIC = b"\x1f\x8b"


def candidate_dirs(
    name: str, root: str | os.PathLike | None, system: Sequence[str] = ()
) -> list[Path]:
    """Folders to search for the files of data set ``name``, in order.

    ``root`` and ``root/<name>`` when a root is given, then ``$HPC_FEDPRUNE_DATA/<name>``,
    the ``system`` folders (where a distribution package installs the data),
    ``~/.cache/hpc_fedprune/<name>`` and ``./data/<name>``. Duplicates are dropped.

    Raises
    ------
    InputError
        ``root`` is given but is not a folder: a root the user named must never be
        silently replaced by a copy found elsewhere.
    """
    dirs: list[Path] = []
    if root is not None:
        if not Path(root).expanduser().is_dir():
            raise InputError(f"data.root: {root} is not an existing folder")
        dirs += [Path(root), Path(root) / name]
    if os.environ.get(ENV_VAR):
        dirs.append(Path(os.environ[ENV_VAR]) / name)
    dirs += [Path(s) for s in system]
    dirs += [Path.home() / ".cache" / "hpc_fedprune" / name, Path("data") / name]
    unique: dict[Path, None] = {}
    for d in dirs:
        unique.setdefault(d.expanduser().absolute(), None)
    return list(unique)


def find_files(
    dirs: Iterable[Path], names: Sequence[str], suffixes: Sequence[str] = ("",)
) -> dict[str, Path] | None:
    """The first folder in ``dirs`` holding every one of ``names`` (each with any suffix).

    Returns
    -------
    dict or None
        ``name -> path`` of the files found in that folder, or None when no folder has all.
    """
    for d in dirs:
        found = {}
        for name in names:
            hits = [d / (name + s) for s in suffixes if (d / (name + s)).is_file()]
            if not hits:
                break
            found[name] = hits[0]
        else:
            return found
    return None


def read_idx(path: Path) -> np.ndarray:
    """Read an IDX file (plain or gzipped) into a native-endian array of its own shape."""
    raw = _read_maybe_gzipped(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0 or raw[2] not in _IDX_DTYPES:
        raise InputError(f"{path}: not an IDX file (bad magic number)")
    dtype, ndim = _IDX_DTYPES[raw[2]], raw[3]
    header = 4 + 4 * ndim
    dims = tuple(int(d) for d in np.frombuffer(raw, ">u4", ndim, offset=4)) if ndim else ()
    count = int(np.prod(dims, dtype=np.int64))
    if len(raw) != header + count * dtype.itemsize:
        raise InputError(
            f"{path}: IDX file is truncated or corrupt "
            f"({len(raw)} bytes, header says {header + count * dtype.itemsize})"
        )
    values = np.frombuffer(raw, dtype, count, offset=header)
    return values.astype(dtype.newbyteorder("="), copy=True).reshape(dims)


def _read_maybe_gzipped(path: Path) -> bytes:
    with open(path, "rb") as f:
        raw = f.read()
    if raw[:2] == _GZIP_MAGIC:
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise InputError(f"{path}: broken gzip file ({e})") from None
    return raw


def _numpy_attr(name: str):
    """``numpy._core.multiarray._reconstruct`` and the like, under numpy 2 and numpy 1."""
    module, _, attr = name.rpartition(".")
    try:
        return getattr(importlib.import_module(module.replace("numpy.core", "numpy._core")), attr)
    except ImportError:
        return getattr(importlib.import_module(module.replace("numpy._core", "numpy.core")), attr)


def _latin1_encode(text, encoding="latin1"):
    # Python 3 writes bytes into protocol-2 pickles as _codecs.encode(str, "latin1").
    if not isinstance(text, str) or encoding not in ("latin1", "latin-1"):
        raise pickle.UnpicklingError("_codecs.encode is admitted for latin1 text only")
    return text.encode("latin1")


def _plain_dtype(*args):
    dtype = np.dtype(*args)
    if dtype.hasobject:
        raise pickle.UnpicklingError("arrays of Python objects are not admitted")
    return dtype


# What a CIFAR batch may name: numpy's array and scalar reconstruction (numpy 1 and 2,
# pickle protocols 2-5) and latin1 bytes. Nothing else can be called while loading.
_CIFAR_GLOBALS = {
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: _plain_dtype,
    ("_codecs", "encode"): lambda: _latin1_encode,
    **{
        (f"numpy.{core}.{module}", name): (
            lambda core=core, module=module, name=name: _numpy_attr(f"numpy.{core}.{module}.{name}")
        )
        for core in ("core", "_core")
        for module, name in (
            ("multiarray", "_reconstruct"),
            ("multiarray", "scalar"),
            ("numeric", "_frombuffer"),
        )
    },
}


class CifarUnpickler(pickle.Unpickler):
    """An unpickler that admits only what the CIFAR python batches hold.

    Dicts, lists, tuples, numbers, strings and bytes need no globals; numpy arrays of
    numbers need the few in ``_CIFAR_GLOBALS``. Any other global (``os.system``,
    ``builtins.eval``, a class with a ``__reduce__``) raises ``UnpicklingError``.
    """

    def find_class(self, module: str, name: str):
        make = _CIFAR_GLOBALS.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(f"{module}.{name} is not admitted in a data file")
        return make()


def load_cifar_pickle(data: bytes):
    """Unpickle CIFAR batch bytes with `CifarUnpickler` (Python 2 strings as bytes)."""
    return CifarUnpickler(io.BytesIO(data), encoding="bytes").load()


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch: images ``N x 3 x 32 x 32`` uint8 and int64 labels."""
    try:
        batch = load_cifar_pickle(path.read_bytes())
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError) as e:
        raise InputError(f"{path}: not a CIFAR python batch ({e})") from None
    if not isinstance(batch, dict):
        raise InputError(f"{path}: not a CIFAR python batch (no dict inside)")
    # Python 2 pickles load with bytes keys; accept str keys from re-pickled copies too.
    batch = {k.decode() if isinstance(k, bytes) else k: v for k, v in batch.items()}
    if "data" not in batch or label_key not in batch:
        raise InputError(f"{path}: CIFAR batch lacks 'data' or {label_key!r}")
    data = np.asarray(batch["data"], dtype=np.uint8)
    labels = np.asarray(batch[label_key], dtype=np.int64)
    if data.ndim != 2 or data.shape[1] != 3 * 32 * 32 or len(data) != len(labels):
        raise InputError(f"{path}: CIFAR batch has data {data.shape} and {len(labels)} labels")
    return data.reshape(-1, 3, 32, 32), labels


def read_arrays(path: Path, names: Sequence[str]) -> tuple[dict[str, np.ndarray], list[str]]:
    """The arrays among ``names`` in an ``.npz`` or HDF5 file, and all the file's names.

    Only the wanted arrays are read; the list of every top-level name is for messages.
    """
    if not path.is_file():
        raise InputError(f"{path}: no such file")
    with open(path, "rb") as f:
        magic = f.read(8)
    if magic == b"\x89HDF\r\n\x1a\n":
        import h5py

        with h5py.File(path, "r") as h5:
            return {n: np.asarray(h5[n][()]) for n in names if n in h5}, list(h5)
    try:
        npz = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as e:
        raise InputError(f"{path}: neither an npz nor an HDF5 file ({e})") from None
    if not isinstance(npz, np.lib.npyio.NpzFile):  # a lone .npy array has no names
        raise InputError(f"{path}: neither an npz nor an HDF5 file")
    with npz:
        try:
            return {n: npz[n] for n in names if n in npz.files}, list(npz.files)
        except ValueError as e:  # object arrays, which would need pickle
            raise InputError(f"{path}: {e}") from None
