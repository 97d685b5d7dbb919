"""Data sets: the ``Dataset`` record, the loader registry and ``load_dataset``.

A loader is one function registered with one line::

    @DATASETS.register("my_data")
    def _my_data(*, root, seed, some_option=3) -> Dataset: ...

Its keyword-only parameters after ``root`` and ``seed`` are its options; ``load_dataset``
rejects any other option by name. A loader returns images in [0, 1] (or raw float values
from a user's file) as float32; ``load_dataset`` then standardises them in one place.

Normalisation
    Each input channel (axis 1) is standardised with the mean and standard deviation of
    the *training* set over all samples and positions: ``(x - mean_c) / std_c``, applied
    to train and test alike, so no test information leaks into training. For 8-bit images
    this equals scaling to [0, 1] first and standardising after. Regression targets stay
    in their own units (years, for the brain-age volumes), so that a reported MAE means
    something.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import InputError
from ..registry import DATASETS
from ..rng import Stream, numpy_rng
from . import synthetic
from .formats import candidate_dirs, find_files, read_arrays, read_cifar_batch, read_idx
from .ondemand import OnDemandRows, hdf5_names, read_hdf5_array

TASKS = ("classification", "regression")

_STATS_CHUNK = 4096  # samples per step when computing channel statistics (bounds memory)


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train and a test set held in memory as numpy arrays.

    Attributes
    ----------
    x_train, x_test : numpy.ndarray
        float32 inputs, ``N x C x H x W`` for images, ``N x C x D x H x W`` for volumes.
    y_train, y_test : numpy.ndarray
        int64 class labels in ``[0, num_classes)``, or float32 regression targets.
    task : str
        ``"classification"`` or ``"regression"``.
    num_classes : int
        Number of classes; 0 for regression.
    name : str
        The loader's name.
    source : str
        Where the data came from: a folder or file, or ``"generated"``.
    """

    x_train: np.ndarray = field(repr=False)
    y_train: np.ndarray = field(repr=False)
    x_test: np.ndarray = field(repr=False)
    y_test: np.ndarray = field(repr=False)
    task: str
    num_classes: int
    name: str
    source: str = ""

    def __post_init__(self) -> None:
        for part in ("train", "test"):
            x, y = getattr(self, f"x_{part}"), getattr(self, f"y_{part}")
            if x.dtype != np.float32 or x.ndim < 2:
                raise InputError(
                    f"{self.name}: x_{part} must be float32 N x ..., got {x.dtype} {x.shape}"
                )
            if y.ndim != 1 or len(y) != len(x):
                raise InputError(f"{self.name}: {len(x)} inputs but y_{part} has shape {y.shape}")
        if self.x_train.shape[1:] != self.x_test.shape[1:]:
            raise InputError(
                f"{self.name}: train samples {self.x_train.shape[1:]} and test samples "
                f"{self.x_test.shape[1:]} differ in shape"
            )
        if self.task == "classification":
            self._check_labels()
        elif self.task == "regression":
            floats = self.y_train.dtype == self.y_test.dtype == np.float32
            if self.num_classes != 0 or not floats:
                raise InputError(f"{self.name}: regression needs float32 targets and num_classes 0")
        else:
            raise InputError(f"{self.name}: task {self.task!r} is not one of {TASKS}")

    def _check_labels(self) -> None:
        if self.num_classes < 1:
            raise InputError(f"{self.name}: classification needs num_classes >= 1")
        for part, y in (("train", self.y_train), ("test", self.y_test)):
            if y.dtype != np.int64:
                raise InputError(f"{self.name}: y_{part} must be int64 labels, got {y.dtype}")
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise InputError(
                    f"{self.name}: y_{part} has labels in [{y.min()}, {y.max()}], "
                    f"outside [0, {self.num_classes})"
                )

    @property
    def input_shape(self) -> tuple[int, ...]:
        """The shape of one sample, e.g. ``(1, 28, 28)``."""
        return tuple(self.x_train.shape[1:])


def load_dataset(
    name: str, *, root: str | None, seed: int, normalize: bool = True, **options
) -> Dataset:
    """Load (or generate) the data set ``name``.

    Parameters
    ----------
    name : str
        A registered loader: see ``dataset_names()``.
    root : str or None
        Folder holding the files of a real data set; other places are searched too.
    seed : int
        The run's seed (synthetic data, deterministic splits).
    normalize : bool
        Standardise each input channel with training-set statistics (module docstring).
    **options
        The loader's options (``dataset_options(name)`` lists them).

    Returns
    -------
    Dataset

    Raises
    ------
    InputError
        Unknown name or option, missing or malformed files, impossible option values.
    """
    dataset = DATASETS.call(name, (), {"root": root, "seed": seed}, options)
    return _standardize(dataset) if normalize else dataset


def dataset_names() -> tuple[str, ...]:
    """Names accepted by ``load_dataset``."""
    return DATASETS.names()


def dataset_options(name: str) -> tuple[str, ...]:
    """The options that the loader ``name`` accepts."""
    return DATASETS.options(name)


def _standardize(ds: Dataset) -> Dataset:
    """Standardise each channel with train statistics, in place (the loader's own arrays)."""
    return standardize(ds, train_stats(ds))


def train_stats(ds: Dataset) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel mean and standard deviation of the training inputs (`channel_stats`).

    Inputs read on demand are read piece by piece (`channel_stats_streamed`): the same bits.
    """
    x = ds.x_train
    if isinstance(x, OnDemandRows):
        return channel_stats_streamed(x.read_range, len(x), x.shape[1:])
    return channel_stats(x)


def standardize(ds: Dataset, stats: tuple[np.ndarray, np.ndarray]) -> Dataset:
    """Standardise ``ds`` in place with ``stats`` (`train_stats`): ``(x - mean_c) / std_c``.

    Inputs read on demand keep the statistics and standardise each sample as it is read.
    """
    mean, std = stats
    if isinstance(ds.x_train, OnDemandRows):
        for x in (ds.x_train, ds.x_test):
            x.standardize(mean, std)
        return ds
    shape = (1, -1) + (1,) * (ds.x_train.ndim - 2)
    for x in (ds.x_train, ds.x_test):
        x -= mean.astype(np.float32).reshape(shape)
        x /= std.astype(np.float32).reshape(shape)
    return ds


def channel_stats(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per-channel (axis 1) mean and standard deviation, in float64, without a full copy.

    A constant channel gets std 1, so that standardising it gives zeros, not NaN.
    """
    axes = (0, *range(2, x.ndim))
    mean = x.mean(axis=axes, dtype=np.float64)
    shape = (1, -1) + (1,) * (x.ndim - 2)
    squares = np.zeros_like(mean)
    for start in range(0, len(x), _STATS_CHUNK):
        d = x[start : start + _STATS_CHUNK].astype(np.float64) - mean.reshape(shape)
        squares += (d * d).sum(axis=axes)
    count = max(x.size // max(x.shape[1], 1), 1)
    std = np.sqrt(squares / count)
    return mean, np.where(std > 0, std, 1.0)


# numpy's summation order, which `channel_stats_streamed` reproduces piece by piece: a
# float32 -> float64 reduction goes through a cast buffer of this many elements, each
# buffer summed pairwise and added to the total in order; a pairwise sum of more than
# _PAIRWISE_BLOCK elements splits at half its length rounded down to a multiple of 8.
_CAST_BUFFER = 8192
_PAIRWISE_BLOCK = 128
_STREAM_ELEMENTS = 1 << 24  # float32 values read at a time (64 MiB)


def channel_stats_streamed(
    read, n: int, sample_shape: tuple[int, ...], *, piece: int = _STREAM_ELEMENTS
) -> tuple[np.ndarray, np.ndarray]:
    """`channel_stats` of ``n`` samples read piece by piece, with the same bits.

    For data sets read from a file on demand (`ondemand.OnDemandRows`): the statistics
    must equal those of the same array in memory, or the standardised inputs would differ
    in their last bits. numpy's sums over a whole array are not sums of per-piece sums, so
    the pieces are summed in numpy's own order (the constants above): per cast buffer for
    the mean, and for the squares per pairwise block of each ``_STATS_CHUNK`` samples (one
    channel) or per sample and channel (several). ``tests/unit/test_data_ondemand.py``
    checks the bits against `channel_stats` for several shapes.

    Parameters
    ----------
    read : callable
        ``read(lo, hi)``: samples ``lo .. hi-1`` as a float32 array ``(hi - lo, *sample_shape)``.
    n : int
        Number of samples.
    sample_shape : tuple of int
        ``(C, ...)``: channels first.
    piece : int
        Most float32 values read at once.
    """
    channels = sample_shape[0]
    inner = int(np.prod(sample_shape[1:], dtype=np.int64))
    per_sample = channels * inner
    step = max(1, piece // max(per_sample, 1))
    acc = np.zeros(channels)
    carry = np.zeros(0, dtype=np.float32)  # one channel: values of an unfinished cast buffer
    for lo in range(0, n, step):
        x = read(lo, min(lo + step, n)).reshape(-1, channels, inner)
        if channels == 1:
            flat = np.concatenate([carry, x.reshape(-1)])
            full = len(flat) // _CAST_BUFFER * _CAST_BUFFER
            for value in flat[:full].reshape(-1, _CAST_BUFFER).astype(np.float64).sum(axis=1):
                acc[0] += value
            carry = flat[full:]
        else:
            for row in _buffer_sums(x):
                acc += row
    if len(carry):
        acc[0] += carry.astype(np.float64).sum()
    count = max(n * inner, 1)
    mean = acc / count
    squares = np.zeros(channels)
    for start in range(0, n, _STATS_CHUNK):
        stop = min(start + _STATS_CHUNK, n)
        if channels == 1:
            squares[0] += _pairwise_squares(read, start, stop, inner, mean[0], piece)
            continue
        part = np.zeros(channels)
        for lo in range(start, stop, step):
            x = read(lo, min(lo + step, stop)).reshape(-1, channels, inner)
            for sample in x:
                d = sample.astype(np.float64) - mean[:, None]
                part += (d * d).sum(axis=1)
        squares += part
    std = np.sqrt(squares / count)
    return mean, np.where(std > 0, std, 1.0)


def _buffer_sums(x: np.ndarray) -> np.ndarray:
    """Sums of ``x`` (samples, channels, inner) over each cast buffer of every channel.

    Returns ``(samples * buffers, channels)``: a sample's buffers in order, then the next
    sample's, the order in which numpy adds them to each channel's total.
    """
    inner = x.shape[2]
    full = inner // _CAST_BUFFER * _CAST_BUFFER
    sums = []
    if full:
        blocks = x[:, :, :full].reshape(x.shape[0], x.shape[1], -1, _CAST_BUFFER)
        sums.append(blocks.astype(np.float64).sum(axis=3))  # (samples, channels, buffers)
    if full < inner:
        sums.append(x[:, :, full:].astype(np.float64).sum(axis=2)[:, :, None])
    per = np.concatenate(sums, axis=2)
    return per.transpose(0, 2, 1).reshape(-1, x.shape[1])


def _pairwise_squares(read, start: int, stop: int, inner: int, mean: float, piece: int) -> float:
    """numpy's pairwise sum of ``(x - mean)**2`` over samples ``start .. stop-1`` (one channel)."""

    def leaf(a: int, b: int) -> float:  # flat positions a .. b-1 of the chunk
        first, last = start + a // inner, start + (b - 1) // inner + 1
        skip = (first - start) * inner
        flat = read(first, last).reshape(-1)[a - skip : b - skip]
        d = flat.astype(np.float64) - mean
        return (d * d).sum()

    def node(a: int, b: int) -> float:
        if b - a <= max(piece, _PAIRWISE_BLOCK):
            return leaf(a, b)
        half = (b - a) // 2
        half -= half % 8
        return node(a, a + half) + node(a + half, b)

    return node(0, (stop - start) * inner)


# ----------------------------------------------------------------------------- validation


def _count(what: str, value: object, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _shape(what: str, value: object, ndim: int) -> tuple[int, ...]:
    if not isinstance(value, Sequence) or len(value) != ndim:
        raise InputError(f"{what} must be {ndim} positive integers, got {value!r}")
    return tuple(_count(what, v) for v in value)


def _noise(what: str, value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value >= 0:
        raise InputError(f"{what} must be a number >= 0, got {value!r}")
    return float(value)


# ----------------------------------------------------------------------------- generated


@DATASETS.register("synthetic")
def _synthetic(
    *,
    root: str | None,
    seed: int,
    num_train: int = 2000,
    num_test: int = 500,
    num_classes: int = 10,
    shape: Sequence[int] = (1, 28, 28),
    noise: float = 1.0,
) -> Dataset:
    """Class-conditional images (``synthetic.class_images``)."""
    k = _count("synthetic: num_classes", num_classes, minimum=2)
    x_train, y_train, x_test, y_test = synthetic.class_images(
        seed,
        _count("synthetic: num_train", num_train),
        _count("synthetic: num_test", num_test),
        k,
        _shape("synthetic: shape (C, H, W)", shape, 3),
        _noise("synthetic: noise", noise),
    )
    return Dataset(x_train, y_train, x_test, y_test, "classification", k, "synthetic", "generated")


@DATASETS.register("synthetic_volumes")
def _synthetic_volumes(
    *,
    root: str | None,
    seed: int,
    num_train: int = 2000,
    num_test: int = 500,
    shape: Sequence[int] = (1, 16, 20, 16),
    noise: float = 1.0,
) -> Dataset:
    """Brain-age-like regression volumes (``synthetic.age_volumes``)."""
    x_train, y_train, x_test, y_test = synthetic.age_volumes(
        seed,
        _count("synthetic_volumes: num_train", num_train),
        _count("synthetic_volumes: num_test", num_test),
        _shape("synthetic_volumes: shape (C, D, H, W)", shape, 4),
        _noise("synthetic_volumes: noise", noise),
    )
    return Dataset(
        x_train, y_train, x_test, y_test, "regression", 0, "synthetic_volumes", "generated"
    )


# ----------------------------------------------------------------------------- IDX

IDX_FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
# Where distribution packages install the files (Debian: dataset-fashion-mnist).
SYSTEM_DIRS: dict[str, tuple[str, ...]] = {
    "fashion_mnist": ("/usr/share/datasets/fashion-mnist",),
    "mnist": ("/usr/share/datasets/mnist",),
}
_HOW_TO_GET = {
    "fashion_mnist": "install them with 'apt-get install dataset-fashion-mnist' (Debian/Ubuntu) "
    "or download the four IDX files from https://github.com/zalandoresearch/fashion-mnist "
    "into {dir}",
    "mnist": "download the four IDX files (train-images-idx3-ubyte.gz, ...) from the MNIST site "
    "or a mirror into {dir}",
}


@DATASETS.register("fashion_mnist")
def _fashion_mnist(*, root: str | None, seed: int) -> Dataset:
    """Fashion-MNIST: 60000 + 10000 grey 28x28 images of 10 kinds of clothing."""
    return _idx_dataset("fashion_mnist", root)


@DATASETS.register("mnist")
def _mnist(*, root: str | None, seed: int) -> Dataset:
    """MNIST: 60000 + 10000 grey 28x28 images of handwritten digits."""
    return _idx_dataset("mnist", root)


def _idx_dataset(name: str, root: str | None) -> Dataset:
    dirs = candidate_dirs(name, root, SYSTEM_DIRS.get(name, ()))
    files = find_files(dirs, IDX_FILES, ("", ".gz"))
    if files is None:
        wanted = ", ".join(f + "[.gz]" for f in IDX_FILES)
        searched = ", ".join(str(d) for d in dirs)
        how = _HOW_TO_GET[name].format(dir=dirs[0])
        raise InputError(f"{name}: {wanted} not found; searched {searched}; {how}")
    arrays = [read_idx(files[f]) for f in IDX_FILES]
    for images in arrays[0::2]:
        if images.ndim != 3 or images.dtype != np.uint8:
            raise InputError(
                f"{name}: expected N x H x W uint8 images, got {images.dtype} {images.shape}"
            )
    x_train, y_train, x_test, y_test = (
        _unit_images(arrays[0][:, None]),
        arrays[1].astype(np.int64),
        _unit_images(arrays[2][:, None]),
        arrays[3].astype(np.int64),
    )
    source = str(files[IDX_FILES[0]].parent)
    return Dataset(x_train, y_train, x_test, y_test, "classification", 10, name, source)


def _unit_images(x: np.ndarray) -> np.ndarray:
    """uint8 images as float32 in [0, 1]."""
    out = x.astype(np.float32)
    out *= np.float32(1 / 255)
    return out


# ----------------------------------------------------------------------------- CIFAR

_CIFAR_URL = "https://www.cs.toronto.edu/~kriz/cifar.html"
# The archive on that page, and the folder it unpacks to.
_CIFAR_ARCHIVES = {
    "cifar10": ("cifar-10-python.tar.gz", "cifar-10-batches-py"),
    "cifar100": ("cifar-100-python.tar.gz", "cifar-100-python"),
}


@DATASETS.register("cifar10")
def _cifar10(*, root: str | None, seed: int) -> Dataset:
    """CIFAR-10 python batches (``cifar-10-batches-py``): 50000 + 10000 colour 32x32 images."""
    train = tuple(f"data_batch_{i}" for i in range(1, 6))
    return _cifar("cifar10", root, train, "test_batch", "labels", 10)


@DATASETS.register("cifar100")
def _cifar100(*, root: str | None, seed: int, labels: str = "fine") -> Dataset:
    """CIFAR-100 python files (``cifar-100-python``); ``labels``: fine (100) or coarse (20)."""
    if labels not in ("fine", "coarse"):
        raise InputError(f"cifar100: labels must be 'fine' or 'coarse', got {labels!r}")
    classes = 100 if labels == "fine" else 20
    return _cifar("cifar100", root, ("train",), "test", f"{labels}_labels", classes)


def _cifar(
    name: str, root: str | None, train: tuple[str, ...], test: str, key: str, classes: int
) -> Dataset:
    """Read the python batches of a CIFAR data set, labels under ``key``."""
    archive, folder = _CIFAR_ARCHIVES[name]
    # Accept the unpacked folder itself or the folder it was unpacked into.
    dirs = [p for d in candidate_dirs(name, root) for p in (d / folder, d)]
    files = find_files(dirs, (*train, test))
    if files is None:
        searched = ", ".join(str(d) for d in dirs)
        raise InputError(
            f"{name}: {', '.join((*train, test))} not found; searched {searched}; download "
            f"{archive} from {_CIFAR_URL} and unpack it into {dirs[1]}"
        )
    parts = [read_cifar_batch(files[f], key) for f in train]
    x_test, y_test = read_cifar_batch(files[test], key)
    x_train = np.concatenate([p[0] for p in parts])
    y_train = np.concatenate([p[1] for p in parts])
    x_train, x_test = _unit_images(x_train), _unit_images(x_test)
    source = str(files[test].parent)
    return Dataset(x_train, y_train, x_test, y_test, "classification", classes, name, source)


# ----------------------------------------------------------------------------- npz / HDF5

_ARRAY_NAMES = ("x_train", "y_train", "x_test", "y_test", "x", "y")
_KEY_SPLIT = 3  # DATA-stream key of the train/test split of x, y files (synthetic uses 1, 2)


@DATASETS.register("npz")
def _npz(
    *,
    root: str | None,
    seed: int,
    path: str,
    test_fraction: float | None = None,
    task: str | None = None,
    num_classes: int | None = None,
) -> Dataset:
    """Arrays from an ``.npz`` file; see ``_array_file``."""
    return _array_file("npz", root, seed, path, test_fraction, task, num_classes)


@DATASETS.register("hdf5")
def _hdf5(
    *,
    root: str | None,
    seed: int,
    path: str,
    test_fraction: float | None = None,
    task: str | None = None,
    num_classes: int | None = None,
    on_demand: bool = False,
    client_cache_mb: float = 1024.0,
) -> Dataset:
    """Arrays at the top level of an HDF5 file; see ``_array_file``.

    ``on_demand``: the inputs stay in the file and are read when needed
    (`ondemand.OnDemandRows`, the same values as in memory); the targets are read at once.
    ``client_cache_mb``: largest client read in one go (larger ones: batch by batch).
    """
    if not on_demand:
        return _array_file("hdf5", root, seed, path, test_fraction, task, num_classes)
    file = _resolve("hdf5", path, root)
    names = hdf5_names(file)
    cache = int(client_cache_mb * 2**20)
    if all(k in names for k in _ARRAY_NAMES[:4]):
        x_train = OnDemandRows(file, "x_train", None, cache_bytes=cache)
        x_test = OnDemandRows(file, "x_test", None, cache_bytes=cache)
        y_train, y_test = read_hdf5_array(file, "y_train"), read_hdf5_array(file, "y_test")
    elif "x" in names and "y" in names:
        y = read_hdf5_array(file, "y")
        train, test = _split_rows("hdf5", names["x"][0][0], len(y), test_fraction, seed)
        x_train = OnDemandRows(file, "x", train, cache_bytes=cache)
        x_test = OnDemandRows(file, "x", test, cache_bytes=cache)
        y_train, y_test = y[train], y[test]
    else:
        _missing_arrays("hdf5", file, list(names))
    y_train, y_test, task, classes = _targets("hdf5", y_train, y_test, task, num_classes)
    return Dataset(x_train, y_train, x_test, y_test, task, classes, "hdf5", str(file))


def _array_file(
    name: str,
    root: str | None,
    seed: int,
    path: str,
    test_fraction: float | None,
    task: str | None,
    num_classes: int | None,
) -> Dataset:
    """A data set from arrays ``x_train, y_train, x_test, y_test`` or ``x, y`` in a file.

    ``x, y`` are split into train and test by a seeded permutation, ``test_fraction``
    (default 0.2) of the samples going to test; a file with its own split ignores
    ``test_fraction``. uint8 inputs are scaled to [0, 1], and
    ``N x H x W`` inputs get a channel axis. The task is regression when ``y`` is a float
    array, else classification (``task`` overrides), with ``num_classes`` defaulting to
    the largest label plus one. A relative ``path`` is looked up as given, then under root.
    """
    file = _resolve(name, path, root)
    arrays, available = read_arrays(file, _ARRAY_NAMES)
    if all(k in arrays for k in _ARRAY_NAMES[:4]):  # the file's own split wins
        x_train, y_train, x_test, y_test = (arrays[k] for k in _ARRAY_NAMES[:4])
    elif "x" in arrays and "y" in arrays:
        x_train, y_train, x_test, y_test = _split(
            name, arrays["x"], arrays["y"], test_fraction, seed
        )
    else:
        _missing_arrays(name, file, available)
    y_train, y_test, task, classes = _targets(name, y_train, y_test, task, num_classes)
    return Dataset(
        _inputs(name, x_train),
        y_train,
        _inputs(name, x_test),
        y_test,
        task,
        classes,
        name,
        str(file),
    )


def _missing_arrays(name: str, file: Path, available: list[str]):
    found = ", ".join(available) or "no arrays"
    raise InputError(
        f"{name}: {file} needs arrays x_train, y_train, x_test, y_test (or x, y); found {found}"
    )


def _targets(
    name: str, y_train: np.ndarray, y_test: np.ndarray, task: str | None, num_classes: int | None
) -> tuple[np.ndarray, np.ndarray, str, int]:
    """Targets as the task needs them: float32 (regression) or int64 labels, and the classes."""
    task = task or ("regression" if np.issubdtype(y_train.dtype, np.floating) else "classification")
    if task == "regression":
        return y_train.astype(np.float32), y_test.astype(np.float32), task, 0
    if task == "classification":
        y_train, y_test = _int_labels(name, y_train), _int_labels(name, y_test)
        top = max(y_train.max(initial=-1), y_test.max(initial=-1)) + 1
        classes = int(top) if num_classes is None else _count(f"{name}: num_classes", num_classes)
        return y_train, y_test, task, classes
    raise InputError(f"{name}: task must be one of {TASKS}, got {task!r}")


def _resolve(name: str, path: str, root: str | None) -> Path:
    tried = [Path(path).expanduser()]
    if root is not None and not tried[0].is_absolute():
        tried.append(Path(root) / path)
    for p in tried:
        if p.is_file():
            return p
    raise InputError(f"{name}: file not found: {' or '.join(str(p) for p in tried)}")


def _split(
    name: str, x: np.ndarray, y: np.ndarray, fraction: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    train, test = _split_rows(name, len(x), len(y), fraction, seed)
    return x[train], y[train], x[test], y[test]


def _split_rows(
    name: str, n_x: int, n_y: int, fraction: float | None, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Train and test rows of an ``x, y`` file: ``fraction`` of them (seeded) go to test."""
    fraction = 0.2 if fraction is None else fraction
    if n_x != n_y:
        raise InputError(f"{name}: x has {n_x} samples but y has {n_y}")
    n_test = int(round(fraction * n_x)) if 0 < fraction < 1 else 0
    if not 1 <= n_test < n_x:
        raise InputError(
            f"{name}: test_fraction {fraction} of {n_x} samples leaves no test or no train set"
        )
    order = numpy_rng(seed, Stream.DATA, _KEY_SPLIT).permutation(n_x)
    # Sorted indices keep the file's order within each part (easier to check by eye).
    return np.sort(order[n_test:]), np.sort(order[:n_test])


def _int_labels(name: str, y: np.ndarray) -> np.ndarray:
    if not (np.issubdtype(y.dtype, np.integer) or y.dtype == bool):
        if not np.all(np.isfinite(y)) or np.any(y != np.round(y)):
            raise InputError(f"{name}: classification labels must be whole numbers")
    return y.astype(np.int64)


def _inputs(name: str, x: np.ndarray) -> np.ndarray:
    if x.ndim == 3:  # N x H x W: grey images without a channel axis
        x = x[:, None]
    if x.ndim < 2 or not (np.issubdtype(x.dtype, np.number) or x.dtype == bool):
        raise InputError(
            f"{name}: inputs must be a numeric N x C x ... array, got {x.dtype} {x.shape}"
        )
    if x.dtype == np.uint8:
        return _unit_images(x)
    return x.astype(np.float32)  # a copy: standardisation works in place
