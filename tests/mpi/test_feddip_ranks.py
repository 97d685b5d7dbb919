"""FedDIP gives bit-identical runs on 1 and 3 ranks (client ERK masks are keyed by client)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

# TINY with LeNet-5 (conv layers for the ERK masks and the per-layer penalty), FedDIP's
# defaults, and a mask change every other round over 5 rounds.
FEDDIP = [
    *TINY,
    "model.name=lenet5",
    "algorithm.name=feddip",
    "federation.rounds=5",
    "algorithm.feddip.reconfig_interval=2",
    "training.weight_decay=0.0005",
    "output.checkpoint_every=0",
]


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_feddip_one_and_three_ranks_are_bit_identical(tmp_path):
    runs = {}
    for n in (1, 3):
        proc = run_mpi(
            n, ["-m", "hpc_fedprune", "run", "--out", str(tmp_path / f"n{n}"), *FEDDIP], timeout=140
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = read_run(tmp_path / f"n{n}" / "run.h5")
    assert runs[3]["attrs"]["world_size"] == 3
    assert runs[1]["metrics"]["sparsity"][-1] == pytest.approx(0.9, abs=1e-3)
    assert_same_results(runs[1], runs[3])
