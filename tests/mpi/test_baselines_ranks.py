"""SNIP, the ERK random mask, PruneFL and FedDST give bit-identical runs on 1 and 3 ranks."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "method",
    [
        ["algorithm.name=snip"],
        ["algorithm.name=random_mask", "algorithm.random_mask.distribution=erk"],
        ["algorithm.name=prunefl", "algorithm.prunefl.reconfig_interval=1"],
        [
            "algorithm.name=feddst",
            "algorithm.feddst.sparsity=0.9",
            "algorithm.feddst.readjust_interval=1",
            "algorithm.feddst.alpha=0.5",
        ],
    ],
    ids=["snip", "random_erk", "prunefl", "feddst"],
)
def test_one_and_three_ranks_are_bit_identical(tmp_path, method):
    runs = {}
    for n in (1, 3):
        out = tmp_path / f"n{n}"
        args = ["-m", "hpc_fedprune", "run", "--out", str(out), *TINY, *method]
        proc = run_mpi(n, [*args, "output.checkpoint_every=0"], timeout=140)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = read_run(out / "run.h5")
    assert runs[3]["attrs"]["world_size"] == 3
    assert runs[1]["metrics"]["sparsity"][-1] == pytest.approx(0.9, abs=1e-3)
    assert_same_results(runs[1], runs[3])
