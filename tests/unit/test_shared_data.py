"""One copy of the data per node (MPI shared memory) and ranks without clients, on one rank."""

from __future__ import annotations

import numpy as np
import pytest
from mpi4py import MPI

from hpc_fedprune.comm.shared import NodeShared
from hpc_fedprune.comm.world import World
from hpc_fedprune.config import load_config
from hpc_fedprune.data import load_dataset
from hpc_fedprune.errors import InputError
from hpc_fedprune.sim.cohort import schedule_cohort
from hpc_fedprune.sim.setup import _dataset_parts, idle_ranks, to_device


def test_shared_views_hold_the_builders_bits_and_are_read_only():
    ds = load_dataset("synthetic", root=None, seed=2, num_train=30, num_test=7, shape=(3, 5, 6))
    node = NodeShared(MPI.COMM_SELF)
    arrays, meta = node.share(lambda: _dataset_parts(ds))
    try:
        assert meta == {"task": "classification", "num_classes": 10, "name": "synthetic",
                        "source": "generated"}  # fmt: skip
        for name, view in arrays.items():
            original = getattr(ds, name)
            assert view.dtype == original.dtype and view.shape == original.shape
            assert view.tobytes() == original.tobytes()
            assert not view.flags.writeable and not np.shares_memory(view, original)
            assert view.ctypes.data % 64 == 0  # each array on its own cache line
        with pytest.raises(ValueError, match="read-only"):
            arrays["x_train"][0, 0, 0, 0] = 1.0
        tensor = to_device(arrays["x_train"], "cpu")  # wraps the window: no copy, no warning
        assert tensor.data_ptr() == arrays["x_train"].ctypes.data
    finally:
        node.free()


def test_the_builders_input_error_reaches_every_rank_of_the_node():
    node = NodeShared(MPI.COMM_SELF)

    def build():
        raise InputError("cifar10: data_batch_1 not found")

    with pytest.raises(InputError, match="data_batch_1 not found"):
        node.share(build)
    node.free()


def test_a_world_of_one_rank_loads_its_own_copy():
    from hpc_fedprune.sim.setup import load_data

    config = load_config(None, ["data.num_train=40", "data.num_test=10"])
    dataset, shared = load_data(config, World.from_mpi())
    assert shared is None and dataset.x_train.flags.writeable


@pytest.mark.parametrize("ranks, per_round, idle", [(64, 10, 54), (8, 5, 3), (4, 10, 0)])
def test_ranks_beyond_the_cohort_never_get_a_client(ranks, per_round, idle):
    """The schedule gives a round's clients to the lowest ranks: the rest are idle."""
    config = load_config(
        None, ["partition.num_clients=20", f"federation.clients_per_round={per_round}"]
    )
    assert idle_ranks(config, ranks) == idle
    sizes = np.random.default_rng(0).integers(1, 300, 20)
    for seed in range(20):
        cohort = np.sort(np.random.default_rng(seed).choice(20, per_round, replace=False))
        busy = [r for r, mine in enumerate(schedule_cohort(cohort, sizes, ranks)) if len(mine)]
        assert len(busy) == ranks - idle and max(busy) < ranks - idle


def test_waiting_modes():
    world = World.from_mpi()
    world.set_waiting("sleep")
    assert world.sleeps and world.sum_int64(np.array([3, -4])).tolist() == [3, -4]
    world.set_waiting("spin")
    assert not world.sleeps and world.any_flag(True)
    world.set_waiting("auto")
    assert world.sleeps == (world.local_size > world.node_cores)
    with pytest.raises(InputError, match="runtime.wait"):
        world.set_waiting("nap")
