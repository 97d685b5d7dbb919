"""Grouped training gives bit-identical runs on 1, 2 and 3 ranks (groups fixed by ids)."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_one_two_and_three_ranks_are_bit_identical_with_groups(tmp_path):
    # A cohort of 7 in groups of 3 (3 + 3 + 1), under a fixed random mask with momentum:
    # groups of unequal size, partial batches, the train mask and the momentum buffer. A
    # conv net, because its batched convolution's bits depend on the group's make-up (group
    # sizes 2 and 3 give different models), so groups formed per rank would show.
    method = [
        "data.shape=[3, 12, 12]",
        "model.name=small_cnn",
        "algorithm.name=random_mask",
        "federation.clients_per_round=7",
        "training.group_size=3",
        "training.momentum=0.5",
    ]
    runs = {}
    for n in (1, 2, 3):
        out = tmp_path / f"n{n}"
        args = ["-m", "hpc_fedprune", "run", "--out", str(out), *TINY, *method]
        proc = run_mpi(n, [*args, "output.checkpoint_every=0"], timeout=140)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "grouped training: up to 3 clients" in proc.stdout
        runs[n] = read_run(out / "run.h5")
    assert runs[3]["attrs"]["world_size"] == 3
    assert_same_results(runs[1], runs[2])
    assert_same_results(runs[1], runs[3])
