"""Data set loaders: real formats written here and read back exactly, synthetic generators."""

from __future__ import annotations

import collections
import gzip
import os
import pickle
import struct
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc_fedprune.data import Dataset, channel_stats, dataset_names, dataset_options, load_dataset
from hpc_fedprune.data import datasets as datasets_module
from hpc_fedprune.data.formats import ENV_VAR, read_cifar_batch, read_idx
from hpc_fedprune.errors import InputError

IDX_NAMES = datasets_module.IDX_FILES


@pytest.fixture(autouse=True)
def _isolated_search(tmp_path, monkeypatch):
    """No loader may find files of this machine: empty home, cwd, site and system folders."""
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.delenv(ENV_VAR, raising=False)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(datasets_module, "SYSTEM_DIRS", {"fashion_mnist": (str(tmp_path / "sys"),)})


# ----------------------------------------------------------------------------- writers


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    """The IDX format: magic 0 0 0x08 ndim, big-endian uint32 dims, then the bytes."""
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        path.with_name(path.name + ".gz").write_bytes(gzip.compress(payload))
    else:
        path.write_bytes(payload)


def write_mnist(folder: Path, rng: np.random.Generator, gz: bool, n_train=9, n_test=4):
    folder.mkdir(parents=True, exist_ok=True)
    arrays = {
        IDX_NAMES[0]: rng.integers(0, 256, (n_train, 28, 28)),
        IDX_NAMES[1]: rng.integers(0, 10, n_train),
        IDX_NAMES[2]: rng.integers(0, 256, (n_test, 28, 28)),
        IDX_NAMES[3]: rng.integers(0, 10, n_test),
    }
    for name, a in arrays.items():
        write_idx(folder / name, a, gz)
    return [arrays[n] for n in IDX_NAMES]


def write_cifar_batch(path: Path, data: np.ndarray, labels: np.ndarray, key: bytes) -> None:
    # The originals are Python 2 pickles: loaded with encoding="bytes", keys are bytes.
    batch = {b"batch_label": b"test", key: labels.tolist(), b"data": data.astype(np.uint8)}
    path.write_bytes(pickle.dumps(batch, protocol=2))


# ----------------------------------------------------------------------------- registry


def test_unknown_name_lists_the_valid_ones():
    with pytest.raises(InputError, match="unknown data set 'fmnist'") as e:
        load_dataset("fmnist", root=None, seed=0)
    for name in ("synthetic", "fashion_mnist", "cifar10", "npz", "hdf5"):
        assert name in str(e.value)
    assert set(dataset_names()) >= {"synthetic", "synthetic_volumes", "mnist", "cifar100"}


def test_unknown_and_missing_options_are_named():
    with pytest.raises(InputError, match="no option 'nosie'.*noise"):
        load_dataset("synthetic", root=None, seed=0, nosie=1.0)
    with pytest.raises(InputError, match="needs option 'path'"):
        load_dataset("npz", root=None, seed=0)
    assert "path" in dataset_options("hdf5")
    assert dataset_options("mnist") == ()


@pytest.mark.parametrize(
    "options",
    [{"num_train": 0}, {"shape": (28, 28)}, {"noise": -1.0}, {"num_classes": 1}, {"num_test": 2.5}],
)
def test_bad_synthetic_options_are_input_errors(options):
    with pytest.raises(InputError):
        load_dataset("synthetic", root=None, seed=0, **options)


# ----------------------------------------------------------------------------- synthetic


def small_synthetic(seed=0, **options):
    opts = {"num_train": 400, "num_test": 200} | options
    return load_dataset("synthetic", root=None, seed=seed, **opts)


def nearest_class_mean_accuracy(ds: Dataset) -> float:
    means = np.stack([ds.x_train[ds.y_train == c].mean(0) for c in range(ds.num_classes)])
    d = ((ds.x_test[:, None] - means[None]) ** 2).reshape(len(ds.x_test), ds.num_classes, -1)
    return float((d.sum(-1).argmin(1) == ds.y_test).mean())


def test_synthetic_is_deterministic_from_the_seed():
    a, b, c = small_synthetic(3), small_synthetic(3), small_synthetic(4)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        assert np.array_equal(getattr(a, field), getattr(b, field))
    assert not np.array_equal(a.x_train, c.x_train)


def test_synthetic_test_set_does_not_depend_on_train_size():
    raw = {"root": None, "seed": 0, "normalize": False, "num_test": 50}
    a = load_dataset("synthetic", num_train=100, **raw)
    b = load_dataset("synthetic", num_train=300, **raw)
    assert np.array_equal(a.x_test, b.x_test) and np.array_equal(a.y_test, b.y_test)


def test_synthetic_is_class_conditional_but_not_trivial():
    ds = small_synthetic()
    assert ds.task == "classification" and ds.num_classes == 10
    assert ds.x_train.dtype == np.float32 and ds.y_train.dtype == np.int64
    assert ds.input_shape == (1, 28, 28)
    assert np.bincount(ds.y_train).min() == np.bincount(ds.y_train).max() == 40
    acc = nearest_class_mean_accuracy(ds)
    assert 0.5 < acc < 0.98  # chance is 0.1
    easy = nearest_class_mean_accuracy(small_synthetic(noise=0.5))
    hard = nearest_class_mean_accuracy(small_synthetic(noise=2.0))
    assert hard < acc < easy


def test_synthetic_labels_are_not_readable_from_the_mean_intensity():
    # A shortcut feature would make the task trivial for any model.
    ds = small_synthetic()
    brightness = ds.x_train.mean(axis=(1, 2, 3))
    per_class = [brightness[ds.y_train == c].mean() for c in range(10)]
    # Class averages of 40 samples each: spread like noise (std / sqrt(40)), no more.
    assert np.std(per_class) < 2 * brightness.std() / np.sqrt(40)


def test_synthetic_other_shapes_and_classes():
    ds = small_synthetic(shape=[3, 16, 12], num_classes=4)
    assert ds.x_train.shape == (400, 3, 16, 12) and ds.input_shape == (3, 16, 12)
    assert set(np.unique(ds.y_test)) == {0, 1, 2, 3}
    assert nearest_class_mean_accuracy(ds) > 0.5


def test_standardisation_uses_training_statistics_per_channel():
    raw = small_synthetic(shape=(3, 8, 8), normalize=False)
    ds = small_synthetic(shape=(3, 8, 8))
    mean, std = channel_stats(raw.x_train)
    per_channel = ds.x_train.transpose(1, 0, 2, 3).reshape(3, -1)
    np.testing.assert_allclose(per_channel.mean(1), 0, atol=1e-5)
    np.testing.assert_allclose(per_channel.std(1), 1, atol=1e-4)
    expect = (raw.x_test - mean[None, :, None, None]) / std[None, :, None, None]
    np.testing.assert_allclose(ds.x_test, expect, rtol=1e-5, atol=1e-5)
    assert abs(ds.x_test.mean()) > 1e-4  # the test set was not standardised by itself


def test_channel_stats_match_numpy_and_survive_constant_channels():
    x = np.random.default_rng(0).normal(3, 2, (5000, 2, 3, 3)).astype(np.float32)
    x[:, 1] = 7.0
    mean, std = channel_stats(x)
    np.testing.assert_allclose(mean, [x[:, 0].mean(dtype=np.float64), 7.0], rtol=1e-6)
    np.testing.assert_allclose(std[0], x[:, 0].std(dtype=np.float64), rtol=1e-6)
    assert std[1] == 1.0


def test_synthetic_volumes_age_is_predictable_from_the_volume():
    ds = load_dataset("synthetic_volumes", root=None, seed=0, num_train=300, num_test=100)
    assert ds.task == "regression" and ds.num_classes == 0
    assert ds.input_shape == (1, 16, 20, 16) and ds.y_train.dtype == np.float32
    assert 45 <= ds.y_train.min() and ds.y_train.max() <= 80

    def pooled(x):  # 4x4x4 blocks: 4 x 5 x 4 = 80 features
        return x.reshape(len(x), 4, 4, 5, 4, 4, 4).mean((2, 4, 6)).reshape(len(x), -1)

    a = np.c_[pooled(ds.x_train), np.ones(len(ds.x_train))]
    w = np.linalg.solve(a.T @ a + 1e-2 * np.eye(a.shape[1]), a.T @ ds.y_train)
    pred = np.c_[pooled(ds.x_test), np.ones(len(ds.x_test))] @ w
    mae = np.abs(pred - ds.y_test).mean()
    assert mae < 0.6 * np.abs(ds.y_test - ds.y_train.mean()).mean()
    assert np.corrcoef(pred, ds.y_test)[0, 1] > 0.8


def test_synthetic_volumes_are_deterministic():
    kw = {"root": None, "num_train": 20, "num_test": 5, "shape": (2, 8, 8, 8)}
    a, b = (
        load_dataset("synthetic_volumes", seed=1, **kw),
        load_dataset("synthetic_volumes", seed=1, **kw),
    )
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert a.x_train.shape == (20, 2, 8, 8, 8)


# ----------------------------------------------------------------------------- IDX


@pytest.mark.parametrize("gz", [True, False], ids=["gzipped", "plain"])
def test_idx_files_read_back_exactly(tmp_path, gz):
    expect = write_mnist(tmp_path / "in", np.random.default_rng(0), gz)
    ds = load_dataset("mnist", root=str(tmp_path / "in"), seed=0, normalize=False)
    assert np.array_equal(np.rint(ds.x_train[:, 0] * 255), expect[0])
    assert np.array_equal(ds.y_train, expect[1]) and ds.y_train.dtype == np.int64
    assert np.array_equal(np.rint(ds.x_test[:, 0] * 255), expect[2])
    assert np.array_equal(ds.y_test, expect[3])
    assert ds.num_classes == 10 and ds.source == str(tmp_path / "in")


def test_idx_found_in_a_subfolder_of_root_and_in_the_site_folder(tmp_path, monkeypatch):
    write_mnist(tmp_path / "root" / "fashion_mnist", np.random.default_rng(1), gz=True)
    ds = load_dataset("fashion_mnist", root=str(tmp_path / "root"), seed=0)
    assert ds.name == "fashion_mnist" and len(ds.x_train) == 9
    write_mnist(tmp_path / "site" / "mnist", np.random.default_rng(2), gz=False)
    monkeypatch.setenv(ENV_VAR, str(tmp_path / "site"))
    assert load_dataset("mnist", root=None, seed=0).source == str(tmp_path / "site" / "mnist")


def test_idx_found_in_the_system_folder(tmp_path):
    write_mnist(tmp_path / "sys", np.random.default_rng(3), gz=True)
    assert load_dataset("fashion_mnist", root=None, seed=0).source == str(tmp_path / "sys")


def test_missing_idx_files_name_every_place_searched(tmp_path):
    (tmp_path / "mine").mkdir()
    with pytest.raises(InputError) as e:
        load_dataset("fashion_mnist", root=str(tmp_path / "mine"), seed=0)
    message = str(e.value)
    assert "\n" not in message
    for place in (
        tmp_path / "mine",
        tmp_path / "mine" / "fashion_mnist",
        tmp_path / "sys",
        tmp_path / "home" / ".cache" / "hpc_fedprune" / "fashion_mnist",
        tmp_path / "data" / "fashion_mnist",
    ):
        assert str(place) in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "train-images-idx3-ubyte" in message


def test_a_folder_missing_one_file_is_skipped(tmp_path):
    write_mnist(tmp_path / "in", np.random.default_rng(0), gz=True)
    (tmp_path / "in" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(InputError, match="not found"):
        load_dataset("mnist", root=str(tmp_path / "in"), seed=0)


def test_truncated_and_foreign_idx_files_are_input_errors(tmp_path):
    write_idx(tmp_path / "a", np.zeros((3, 4, 4), np.uint8), gz=False)
    (tmp_path / "b").write_bytes((tmp_path / "a").read_bytes()[:-1])
    (tmp_path / "c").write_bytes(b"\x89PNG\r\n\x1a\n")
    assert read_idx(tmp_path / "a").shape == (3, 4, 4)
    with pytest.raises(InputError, match="truncated"):
        read_idx(tmp_path / "b")
    with pytest.raises(InputError, match="not an IDX"):
        read_idx(tmp_path / "c")


# ----------------------------------------------------------------------------- CIFAR


def write_cifar10(folder: Path, rng: np.random.Generator):
    folder.mkdir(parents=True)
    parts = []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        data, labels = rng.integers(0, 256, (3, 3072)), rng.integers(0, 10, 3)
        write_cifar_batch(folder / name, data, labels, b"labels")
        parts.append((data, labels))
    return parts


@pytest.mark.parametrize("at", ["folder", "parent", "named_parent"])
def test_cifar10_batches_read_back_exactly(tmp_path, at):
    sub = {"folder": "", "parent": "", "named_parent": "cifar10"}[at]
    folder = tmp_path / "r" / sub / "cifar-10-batches-py"
    parts = write_cifar10(folder, np.random.default_rng(0))
    root = folder if at == "folder" else tmp_path / "r"
    ds = load_dataset("cifar10", root=str(root), seed=0, normalize=False)
    x_train = np.concatenate([d for d, _ in parts[:5]]).reshape(-1, 3, 32, 32)
    assert np.array_equal(np.rint(ds.x_train * 255), x_train)
    assert np.array_equal(ds.y_train, np.concatenate([y for _, y in parts[:5]]))
    assert np.array_equal(np.rint(ds.x_test * 255), parts[5][0].reshape(-1, 3, 32, 32))
    assert np.array_equal(ds.y_test, parts[5][1])
    assert ds.input_shape == (3, 32, 32) and ds.num_classes == 10


@pytest.mark.parametrize("labels,classes", [("fine", 100), ("coarse", 20)])
def test_cifar100_fine_and_coarse_labels(tmp_path, labels, classes):
    folder = tmp_path / "cifar-100-python"
    folder.mkdir()
    rng = np.random.default_rng(0)
    expect = {}
    for name, n in (("train", 5), ("test", 2)):
        data = rng.integers(0, 256, (n, 3072))
        y = {"fine": rng.integers(0, 100, n), "coarse": rng.integers(0, 20, n)}
        batch = {b"data": data.astype(np.uint8), b"fine_labels": y["fine"].tolist()}
        batch[b"coarse_labels"] = y["coarse"].tolist()
        (folder / name).write_bytes(pickle.dumps(batch, protocol=2))
        expect[name] = (data, y[labels])
    ds = load_dataset("cifar100", root=str(tmp_path), seed=0, normalize=False, labels=labels)
    assert ds.num_classes == classes
    assert np.array_equal(ds.y_train, expect["train"][1])
    assert np.array_equal(ds.y_test, expect["test"][1])
    assert np.array_equal(np.rint(ds.x_test * 255).reshape(2, -1), expect["test"][0])


def test_missing_cifar_says_where_to_get_it(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(InputError, match=r"cifar-10-python\.tar\.gz") as e:
        load_dataset("cifar10", root=str(tmp_path / "x"), seed=0)
    assert str(tmp_path / "x" / "cifar-10-batches-py") in str(e.value)


def test_a_root_that_does_not_exist_is_never_replaced_by_another_copy(tmp_path, monkeypatch):
    # The files are where the search would look next (the system folder).
    write_mnist(tmp_path / "sys", np.random.default_rng(0), gz=False)
    assert len(load_dataset("fashion_mnist", root=None, seed=0).x_train) == 9
    with pytest.raises(InputError, match="data.root: /nonexistent is not an existing folder"):
        load_dataset("fashion_mnist", root="/nonexistent", seed=0)


# ------------------------------------------------------------------ CIFAR: no code in data


class _Planted:
    """What a planted file would hold: unpickling it calls os.system."""

    def __reduce__(self):
        return (os.system, ("echo planted > planted.txt",))


@pytest.mark.parametrize(
    "payload",
    [
        {b"data": _Planted(), b"labels": [1]},
        {b"data": np.array([_Planted()], dtype=object), b"labels": [1]},
        {b"data": collections.OrderedDict(a=1), b"labels": [1]},
    ],
)
def test_a_planted_cifar_batch_is_refused_not_run(tmp_path, monkeypatch, payload):
    monkeypatch.chdir(tmp_path)
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(pickle.dumps(payload, protocol=2))
    with pytest.raises(InputError, match="not a CIFAR python batch .*not admitted"):
        read_cifar_batch(folder / "data_batch_1", "labels")
    assert not (tmp_path / "planted.txt").exists()


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_cifar_batches_of_every_pickle_protocol_load(tmp_path, protocol):
    data = np.random.default_rng(0).integers(0, 256, (3, 3072)).astype(np.uint8)
    batch = {b"batch_label": b"x", b"labels": [4, 5, 6], b"data": data}
    (tmp_path / "b").write_bytes(pickle.dumps(batch, protocol=protocol))
    x, y = read_cifar_batch(tmp_path / "b", "labels")
    assert np.array_equal(x.reshape(3, -1), data) and list(y) == [4, 5, 6]


def test_python2_numpy_names_load(tmp_path):
    # The original batches name numpy.core.multiarray (numpy 1); numpy 2 calls it _core.
    data = np.arange(3072, dtype=np.uint8).reshape(1, 3072)
    raw = pickle.dumps({b"labels": [7], b"data": data}, protocol=2)
    raw = raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    assert b"numpy.core.multiarray" in raw
    (tmp_path / "b").write_bytes(raw)
    x, y = read_cifar_batch(tmp_path / "b", "labels")
    assert np.array_equal(x.reshape(1, -1), data) and list(y) == [7]


# ----------------------------------------------------------------------------- npz / HDF5


def write_npz(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with open(path, "wb") as f:  # a file object: np.savez would append ".npz" to a name
        np.savez(f, **arrays)


def write_hdf5(path: Path, arrays: dict[str, np.ndarray]) -> None:
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v


WRITERS = {"npz": write_npz, "hdf5": write_hdf5}


@pytest.mark.parametrize("fmt", WRITERS)
def test_array_files_read_back_exactly(tmp_path, fmt):
    rng = np.random.default_rng(0)
    arrays = {
        "x_train": rng.normal(size=(6, 2, 4, 4)).astype(np.float32),
        "y_train": np.array([0, 1, 2, 0, 1, 4]),
        "x_test": rng.normal(size=(3, 2, 4, 4)).astype(np.float32),
        "y_test": np.array([2, 1, 0], dtype=np.int32),
    }
    WRITERS[fmt](tmp_path / "d.bin", arrays)
    ds = load_dataset(fmt, root=None, seed=0, normalize=False, path=str(tmp_path / "d.bin"))
    for k, v in arrays.items():
        assert np.array_equal(getattr(ds, k), v)
    assert ds.task == "classification" and ds.num_classes == 5 and ds.y_test.dtype == np.int64


@pytest.mark.parametrize("fmt", WRITERS)
def test_array_files_with_float_targets_are_regression(tmp_path, fmt):
    x = np.arange(40, dtype=np.uint8).reshape(10, 2, 2)  # N x H x W: gets a channel axis
    y = np.linspace(45, 80, 10)
    WRITERS[fmt](tmp_path / "f", {"x": x, "y": y})
    ds = load_dataset(fmt, root=str(tmp_path), seed=0, normalize=False, path="f", test_fraction=0.3)
    assert ds.task == "regression" and ds.num_classes == 0 and ds.y_train.dtype == np.float32
    assert ds.input_shape == (1, 2, 2) and len(ds.x_test) == 3
    # The split is a partition of the rows, each row kept whole with its target.
    rows = np.concatenate([ds.x_train, ds.x_test]).reshape(10, -1)[:, 0] * 255
    assert sorted(np.rint(rows).astype(int) // 4) == list(range(10))
    np.testing.assert_allclose(
        np.concatenate([ds.y_train, ds.y_test]), y[np.rint(rows).astype(int) // 4]
    )


def test_array_file_split_is_deterministic_from_the_seed(tmp_path):
    write_npz(tmp_path / "s.npz", {"x": np.arange(200.0).reshape(100, 2), "y": np.arange(100) % 3})
    kw = {"root": None, "path": str(tmp_path / "s.npz"), "normalize": False}
    a, b, c = (load_dataset("npz", seed=s, **kw) for s in (0, 0, 1))
    assert np.array_equal(a.x_test, b.x_test) and not np.array_equal(a.x_test, c.x_test)
    assert len(a.x_test) == 20 and a.num_classes == 3


def test_array_file_errors(tmp_path):
    with pytest.raises(InputError, match="file not found"):
        load_dataset("npz", root=None, seed=0, path=str(tmp_path / "none.npz"))
    write_npz(tmp_path / "w.npz", {"images": np.zeros((3, 2))})
    with pytest.raises(InputError, match="found images"):
        load_dataset("npz", root=None, seed=0, path=str(tmp_path / "w.npz"))
    write_npz(tmp_path / "t.npz", {"x": np.zeros((3, 2)), "y": np.zeros(3, int)})
    with pytest.raises(InputError, match="no test or no train"):
        load_dataset("npz", root=None, seed=0, path=str(tmp_path / "t.npz"), test_fraction=0.01)
    (tmp_path / "junk").write_bytes(b"not an archive")
    with pytest.raises(InputError, match="neither an npz nor an HDF5"):
        load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "junk"))


def test_a_file_with_its_own_split_ignores_test_fraction(tmp_path):
    arrays = {"x_train": np.zeros((4, 3)), "y_train": np.arange(4), "x_test": np.ones((2, 3))}
    write_hdf5(tmp_path / "own.h5", arrays | {"y_test": np.array([0, 1]), "x": np.zeros((9, 3))})
    ds = load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "own.h5"), test_fraction=0.5)
    assert (len(ds.x_train), len(ds.x_test)) == (4, 2)


def test_dataset_rejects_inconsistent_arrays():
    x, y = np.zeros((3, 1, 2, 2), np.float32), np.zeros(3, np.int64)
    with pytest.raises(InputError, match="3 inputs but y_test"):
        Dataset(x, y, x, y[:2], "classification", 2, "bad")
    with pytest.raises(InputError, match="outside"):
        Dataset(x, y + 2, x, y, "classification", 2, "bad")
    with pytest.raises(InputError, match="float32 targets"):
        Dataset(x, y.astype(np.float32), x, y, "regression", 0, "bad")
    assert Dataset(x, y, x, y, "classification", 1, "ok").input_shape == (1, 2, 2)
