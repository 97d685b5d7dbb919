"""A node of many ranks, as CI can afford it: 8 ranks on 2 cores, bit-identical to one.

The 8 ranks share one copy of the data set (MPI shared memory, one node), and most of
them never train: 6 clients, 5 per round, so ranks 5, 6 and 7 only take part in the
collectives. Larger counts (16, 64) are measured by ``benchmarks/startup.py`` and
``benchmarks/memory.py``, not here.
"""

from __future__ import annotations

import pytest
import torch

from hpc_fedprune.comm.world import World
from hpc_fedprune.config import load_config
from hpc_fedprune.sim.loop import run_rounds
from hpc_fedprune.sim.setup import build_setup
from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

SCALE = [*TINY, "partition.num_clients=6", "federation.rounds=2", "data.shared_memory=true"]


@pytest.mark.mpi
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_eight_ranks_with_shared_data_and_idle_ranks_equal_one(tmp_path):
    proc = run_mpi(8, ["-m", "hpc_fedprune", "run", "--out", str(tmp_path / "n8"), *SCALE],
                   timeout=540)  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "data set: one copy per node in shared memory, read by its 8 rank(s)" in proc.stdout
    assert proc.stdout.count("3 of 8 ranks idle") == 1  # printed once, by rank 0
    config = load_config(None, SCALE)  # the same run on this one rank, in-process,
    threads = torch.get_num_threads()  # with one torch thread, as every launched rank has
    torch.set_num_threads(1)
    try:
        run_rounds(config, World.from_mpi(), build_setup(config, 1, "cpu"), tmp_path / "n1")
    finally:
        torch.set_num_threads(threads)
    many, one = read_run(tmp_path / "n8" / "run.h5"), read_run(tmp_path / "n1" / "run.h5")
    assert many["attrs"]["world_size"] == 8
    assert_same_results(one, many)
