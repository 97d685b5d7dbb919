"""Inputs read from an HDF5 file when they are needed, for data sets larger than memory.

`OnDemandRows` stands where a loader would put its ``x_train`` or ``x_test`` array: it has
the array's ``shape``, ``dtype`` (float32) and length, and `OnDemandRows.read` returns the
samples asked for, converted exactly as the in-memory loader converts the whole array
(8-bit values scaled to [0, 1], a channel axis for ``N x H x W``, then standardised per
channel with the training set's statistics). The values are therefore the same bits as
in memory, and so is every result computed from them.

Reads go in file order: the wanted rows are sorted, and each run of consecutive rows is
one HDF5 read straight into the output buffer. Each process opens the file once,
read-only and without HDF5's file locking (many ranks read it at once, nobody writes it).
A file written for this works best with one chunk per sample (or no chunking) and no
compression.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..errors import InputError


class OnDemandRows:
    """The float32 inputs of one split of a data set, read from an HDF5 file on demand.

    Parameters
    ----------
    path : Path
        The HDF5 file.
    dataset : str
        Name of the input array in the file (``x_train``, ``x_test`` or ``x``).
    rows : numpy.ndarray or None
        The file rows of this split, in order (a seeded train/test split of ``x``); None:
        every row.
    cache_bytes : int
        A client whose inputs take more bytes than this is read batch by batch
        (`hpc_fedprune.training.samples.client_samples`).

    Attributes
    ----------
    shape : tuple of int
        ``(samples, C, ...)``, as the in-memory array would be.
    """

    dtype = np.dtype(np.float32)

    def __init__(
        self, path: Path, dataset: str, rows: np.ndarray | None, *, cache_bytes: int
    ) -> None:
        self.path = Path(path)
        self.dataset = dataset
        self.rows = None if rows is None else np.asarray(rows, dtype=np.int64)
        self.cache_bytes = int(cache_bytes)
        self._file = None
        self._scale: tuple[np.ndarray, np.ndarray] | None = None  # float32 mean, std
        ds = self._data()
        if ds.ndim < 2 or not (np.issubdtype(ds.dtype, np.number) or ds.dtype == bool):
            raise InputError(
                f"hdf5: {path}: {dataset} must be a numeric N x C x ... array, "
                f"got {ds.dtype} {ds.shape}"
            )
        self.file_dtype = ds.dtype
        self.file_sample = tuple(int(d) for d in ds.shape[1:])
        # N x H x W: grey images without a channel axis, as the in-memory loader reads them
        sample = (1, *self.file_sample) if ds.ndim == 3 else self.file_sample
        count = ds.shape[0] if self.rows is None else len(self.rows)
        self.shape = (int(count), *sample)

    def _data(self):
        if self._file is None:
            import h5py

            try:
                self._file = h5py.File(self.path, "r", locking=False)
            except OSError as e:
                raise InputError(f"hdf5: cannot open {self.path} ({e})") from None
        return self._file[self.dataset]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return self.shape[0]

    @property
    def sample_bytes(self) -> int:
        """Bytes of one sample as float32."""
        return 4 * int(np.prod(self.shape[1:], dtype=np.int64))

    def standardize(self, mean: np.ndarray, std: np.ndarray) -> None:
        """Standardise every sample read from now on: ``(x - mean_c) / std_c`` in float32."""
        shape = (1, -1) + (1,) * (self.ndim - 2)
        self._scale = (
            np.asarray(mean).astype(np.float32).reshape(shape),
            np.asarray(std).astype(np.float32).reshape(shape),
        )

    def read_range(self, lo: int, hi: int) -> np.ndarray:
        """Samples ``lo .. hi-1`` of the split (see `read`)."""
        return self.read(np.arange(lo, hi, dtype=np.int64))

    def read(self, indices: np.ndarray) -> np.ndarray:
        """The samples at ``indices`` of the split, in that order, as float32.

        Converted as the in-memory loader converts them: uint8 scaled to [0, 1], other
        types cast to float32, a channel axis added to ``N x H x W``, standardised after
        `standardize`.
        """
        idx = np.asarray(indices, dtype=np.int64).reshape(-1)
        if len(idx) and (idx.min() < 0 or idx.max() >= len(self)):
            raise IndexError(f"{self.dataset}: sample index out of range [0, {len(self)})")
        file_rows = idx if self.rows is None else self.rows[idx]
        wanted, inverse = np.unique(file_rows, return_inverse=True)
        raw = np.empty((len(wanted), *self.file_sample), dtype=self.file_dtype)
        ds = self._data()
        # One read per run of consecutive rows, straight into its place in `raw`.
        breaks = np.flatnonzero(np.diff(wanted) != 1) + 1
        for start, stop in zip(np.r_[0, breaks], np.r_[breaks, len(wanted)]):
            first = int(wanted[start])
            ds.read_direct(
                raw,
                np.s_[first : first + int(stop - start)],
                np.s_[int(start) : int(stop)],
            )
        if self.file_dtype == np.uint8:
            x = raw.astype(np.float32)
            x *= np.float32(1 / 255)  # as the in-memory loader scales 8-bit images
        else:
            x = raw.astype(np.float32)
        x = x.reshape(len(wanted), *self.shape[1:])
        if self._scale is not None:
            x -= self._scale[0]
            x /= self._scale[1]
        if len(wanted) == len(idx) and np.array_equal(wanted, file_rows):
            return x
        return x[inverse]

    def close(self) -> None:
        """Close the file (it opens again at the next read)."""
        if self._file is not None:
            self._file.close()
            self._file = None


def hdf5_names(path: Path) -> dict[str, tuple[tuple[int, ...], np.dtype]]:
    """Shape and dtype of every top-level array of an HDF5 file, without reading them."""
    import h5py

    try:
        with h5py.File(path, "r", locking=False) as f:
            return {
                k: (tuple(v.shape), v.dtype) for k, v in f.items() if isinstance(v, h5py.Dataset)
            }
    except OSError as e:
        raise InputError(f"hdf5: {path}: not a readable HDF5 file ({e})") from None


def read_hdf5_array(path: Path, name: str) -> np.ndarray:
    """One whole array of an HDF5 file (the targets of a data set read on demand)."""
    import h5py

    with h5py.File(path, "r", locking=False) as f:
        return np.asarray(f[name][()])
