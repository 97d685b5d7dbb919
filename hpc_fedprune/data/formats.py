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
    bytes. Pickles can run code when loaded: read only files from a trusted source.
    npz / HDF5: named arrays at the top level of the file.
"""

from __future__ import annotations

import gzip
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
    """
    dirs: list[Path] = []
    if root is not None:
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


def read_cifar_batch(path: Path, label_key: str) -> tuple[np.ndarray, np.ndarray]:
    """Read one CIFAR python batch: images ``N x 3 x 32 x 32`` uint8 and int64 labels."""
    try:
        with open(path, "rb") as f:
            batch = pickle.load(f, encoding="bytes")
    except (pickle.UnpicklingError, EOFError, ValueError) as e:
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
