"""Data read from an HDF5 file on demand: the same bits as in memory, and whole runs alike."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from hpc_fedprune.comm.world import World
from hpc_fedprune.config import load_config
from hpc_fedprune.data import OnDemandRows, channel_stats, load_dataset
from hpc_fedprune.data.datasets import channel_stats_streamed
from hpc_fedprune.errors import InputError
from hpc_fedprune.sim.loop import run_rounds
from hpc_fedprune.sim.setup import build_setup, to_device
from hpc_fedprune.training.samples import BatchReader, RowCache, client_samples

# ----------------------------------------------------------------------------- statistics


@pytest.mark.parametrize(
    "shape",
    [
        (1000, 1, 28, 28),  # one channel: cast buffers across sample boundaries
        (9000, 1, 6, 6),  # more than one chunk of squares (4096 samples)
        (300, 3, 32, 32),  # several channels
        (37, 2, 5, 7),
        (6, 2, 70, 130),  # a channel larger than one cast buffer (8192 values)
        (4, 1, 40, 50, 45),  # volumes
    ],
)
@pytest.mark.parametrize("piece", [1000, 50_000, 1 << 24])
def test_streamed_statistics_are_numpys_bits(shape, piece):
    """Piece by piece (any piece size) gives exactly numpy's sums over the whole array."""
    x = (np.random.default_rng(sum(shape)).standard_normal(shape) * 3 + 1).astype(np.float32)
    reads = []

    def read(lo, hi):
        reads.append(hi - lo)
        return x[lo:hi]

    mean, std = channel_stats_streamed(read, len(x), x.shape[1:], piece=piece)
    want_mean, want_std = channel_stats(x)
    assert mean.tobytes() == want_mean.tobytes()
    assert std.tobytes() == want_std.tobytes()
    per_sample = int(np.prod(shape[1:]))
    assert max(reads) <= max(piece // per_sample, 1) + 2  # memory stays bounded by the piece


def test_streamed_statistics_of_a_constant_channel():
    x = np.ones((50, 2, 3, 3), dtype=np.float32)
    x[:, 1] = np.arange(50, dtype=np.float32)[:, None, None]
    mean, std = channel_stats_streamed(lambda lo, hi: x[lo:hi], 50, x.shape[1:], piece=40)
    want_mean, want_std = channel_stats(x)
    assert mean.tobytes() == want_mean.tobytes() and std.tobytes() == want_std.tobytes()
    assert std[0] == 1.0


# ----------------------------------------------------------------------------- files


def write_split_file(path: Path, n=120, shape=(10, 9), classes=4, seed=0) -> dict:
    """Grey uint8 images N x H x W and int labels, as ``x, y`` (split by the loader)."""
    rng = np.random.default_rng(seed)
    arrays = {"x": rng.integers(0, 256, (n, *shape)).astype(np.uint8)}
    arrays["y"] = np.arange(n) % classes
    with h5py.File(path, "w") as f:
        for k, v in arrays.items():
            f[k] = v
    return arrays


def write_own_split_file(path: Path, n_train=90, n_test=30, shape=(3, 6, 6), seed=1):
    """float64 inputs with channels and float targets (regression), the file's own split."""
    rng = np.random.default_rng(seed)
    with h5py.File(path, "w") as f:
        f.create_dataset("x_train", data=rng.normal(2, 3, (n_train, *shape)), chunks=(1, *shape))
        f["y_train"] = rng.uniform(45, 80, n_train)
        f["x_test"] = rng.normal(2, 3, (n_test, *shape))
        f["y_test"] = rng.uniform(45, 80, n_test)


def test_on_demand_reads_the_in_memory_bits(tmp_path):
    write_split_file(tmp_path / "d.h5")
    memory = load_dataset("hdf5", root=None, seed=5, path=str(tmp_path / "d.h5"))
    lazy = load_dataset("hdf5", root=None, seed=5, path=str(tmp_path / "d.h5"), on_demand=True)
    assert isinstance(lazy.x_train, OnDemandRows)
    assert lazy.x_train.shape == memory.x_train.shape == (96, 1, 10, 9)
    assert lazy.input_shape == memory.input_shape
    assert (lazy.task, lazy.num_classes) == (memory.task, memory.num_classes)
    assert np.array_equal(lazy.y_train, memory.y_train)
    for part in ("train", "test"):
        x_mem, x_lazy = getattr(memory, f"x_{part}"), getattr(lazy, f"x_{part}")
        assert x_lazy.read_range(0, len(x_lazy)).tobytes() == x_mem.tobytes()
    # Any order, repeats, single rows: each row as in memory.
    idx = np.array([95, 3, 3, 40, 0, 41, 42, 7])
    assert lazy.x_train.read(idx).tobytes() == memory.x_train[idx].tobytes()


def test_on_demand_float_inputs_with_channels(tmp_path):
    write_own_split_file(tmp_path / "v.h5")
    memory = load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "v.h5"))
    lazy = load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "v.h5"), on_demand=True)
    assert lazy.task == memory.task == "regression"
    for part in ("train", "test"):
        x_mem, x_lazy = getattr(memory, f"x_{part}"), getattr(lazy, f"x_{part}")
        assert x_lazy.read_range(0, len(x_lazy)).tobytes() == x_mem.tobytes()


def test_on_demand_errors_name_the_file(tmp_path):
    with h5py.File(tmp_path / "bad.h5", "w") as f:
        f["inputs"] = np.zeros((4, 2))
    with pytest.raises(InputError, match="bad.h5 needs arrays x_train.*found inputs"):
        load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "bad.h5"), on_demand=True)
    with pytest.raises(InputError, match="file not found"):
        load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "no.h5"), on_demand=True)
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InputError, match="not a readable HDF5 file"):
        load_dataset("hdf5", root=None, seed=0, path=str(tmp_path / "text.h5"), on_demand=True)


def test_on_demand_needs_the_hdf5_loader():
    with pytest.raises(InputError, match="data.on_demand: reads HDF5 files only"):
        load_config(None, ["data.on_demand=true"])


def test_client_samples_index_like_the_whole_tensor(tmp_path):
    """A client's rows (cached, or read batch by batch) index by global sample indices."""
    write_split_file(tmp_path / "d.h5")
    memory = load_dataset("hdf5", root=None, seed=5, path=str(tmp_path / "d.h5"))
    x = torch.from_numpy(memory.x_train)
    assert client_samples(x, np.arange(3)) is x
    for cache_mb, kind in ((1.0, RowCache), (1e-4, BatchReader)):
        lazy = load_dataset(
            "hdf5", root=None, seed=5, path=str(tmp_path / "d.h5"), on_demand=True,
            client_cache_mb=cache_mb,
        )  # fmt: skip
        rows = to_device(lazy.x_train, "cpu")
        client = np.array([50, 2, 17, 90, 33])
        got = client_samples(rows, client)
        assert isinstance(got, kind)
        sel = torch.tensor([[90, 2], [2, 33]])  # any shape of indices, as grouped training uses
        assert torch.equal(got[sel], x[sel])
        assert torch.equal(got[torch.tensor([17])], x[torch.tensor([17])])
        if kind is RowCache:  # a client asked for again is not read again
            assert client_samples(rows, client[::-1]) is got


# ----------------------------------------------------------------------------- whole runs

RUN = [
    "model.name=mlp",
    "model.mlp.hidden=[16]",
    "partition.num_clients=6",
    "partition.min_size=5",
    "federation.clients_per_round=4",
    "federation.rounds=2",
    "federation.eval_batch_size=7",
    "training.batch_size=8",
    "training.local_epochs=1",
    "runtime.seed=4",
]
CASES = {
    # grey images, split from x, y; local test splits (evaluation by index) and both
    # membership attacks (shadow training and outputs by index)
    "images_privacy": [
        "partition.local_test_fraction=0.2",
        "federation.eval_local=true",
        "privacy.enabled=true",
        "privacy.shadow_models=1",
        "privacy.shadow_epochs=1",
        "privacy.samples=40",
    ],
    # several channels; AutoFLIP's exploration, grouped training, clients read batch by batch
    "channels_explore_grouped": [
        "algorithm.name=autoflip",
        "algorithm.autoflip.epochs=2",
        "algorithm.autoflip.patience=1",
        "algorithm.autoflip.explorer_fraction=0.5",
        "training.group_size=2",
        "data.client_cache_mb=0.001",
    ],
}


def run_once(tmp_path, name, file, on_demand) -> dict:
    out = tmp_path / f"{name}-{on_demand}"
    config = load_config(
        None,
        [*RUN, "data.name=hdf5", f"data.path={file}", f"data.on_demand={on_demand}", *CASES[name]],
    )
    setup = build_setup(config, 1, "cpu")
    assert isinstance(setup.dataset.x_train, OnDemandRows) == on_demand
    run_rounds(config, World.from_mpi(), setup, out)
    return every_dataset(out / "run.h5")


def every_dataset(path) -> dict[str, bytes]:
    """The bytes of every dataset of a run file, but the clock's."""
    out = {}
    with h5py.File(path, "r") as f:

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name != "metrics/wall_s":
                value = obj[...]
                out[name] = repr(value.tolist()) if value.dtype.kind == "O" else value.tobytes()

        f.visititems(visit)
    return out


@pytest.mark.parametrize("name", sorted(CASES))
def test_a_run_on_demand_is_the_run_in_memory(tmp_path, name):
    """The same run with the data in memory and read on demand: identical run files."""
    file = tmp_path / "data.h5"
    if name == "images_privacy":
        write_split_file(file, n=150)
    else:
        rng = np.random.default_rng(2)
        with h5py.File(file, "w") as f:
            f["x_train"] = rng.integers(0, 256, (120, 3, 5, 5)).astype(np.uint8)
            f["y_train"] = np.arange(120) % 3
            f["x_test"] = rng.integers(0, 256, (40, 3, 5, 5)).astype(np.uint8)
            f["y_test"] = np.arange(40) % 3
    memory = run_once(tmp_path, name, file, False)
    lazy = run_once(tmp_path, name, file, True)
    assert "model/flat" in memory and set(lazy) == set(memory)
    if name == "images_privacy":
        assert "privacy/auc" in memory and "metrics/local_test_accuracy" in memory
    else:
        assert "exploration/scores" in memory
    bad = [key for key, value in memory.items() if lazy[key] != value]
    assert not bad, bad
