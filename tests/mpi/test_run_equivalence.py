"""A whole run is bit-identical on 1, 2, 3 and 4 ranks; bad input and crashes end every rank.

The run augments its training batches (keyed crops and flips) and reports every evaluation
score and the per-layer cost, so all of them are compared across rank counts.
"""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

RANKS = (1, 2, 3, 4)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The same tiny FedAvg run at every rank count (launched once per count)."""
    augment = ["data.augment=crop_flip", "data.crop_padding=2"]
    base = tmp_path_factory.mktemp("equiv")
    out = {}
    for n in RANKS:
        d = base / f"n{n}"
        proc = run_mpi(
            n,
            [
                "-m",
                "hpc_fedprune",
                "run",
                "--out",
                str(d),
                *TINY,
                *augment,
                "federation.server_momentum=0.5",
            ],
            timeout=240,
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[n] = read_run(d / "run.h5")
    return out


@pytest.mark.mpi
@pytest.mark.timeout(900)
@pytest.mark.parametrize("n", RANKS[1:])
def test_model_and_metrics_identical_to_one_rank(runs, n):
    assert runs[n]["attrs"]["world_size"] == n
    assert {"test_f1_macro", "test_top5_accuracy", "flops_effective"} <= set(runs[n]["metrics"])
    assert_same_results(runs[1], runs[n])


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_bad_input_under_mpi_is_reported_once(tmp_path):
    proc = run_mpi(
        3,
        ["-m", "hpc_fedprune", "run", "--out", str(tmp_path / "r"), "training.lr=fast"],
        timeout=100,
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == ["error: training.lr: expected a number, got 'fast'"]
    assert not (tmp_path / "r" / "run.h5").exists()


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_exception_on_one_rank_ends_the_job(tmp_path):
    """Rank 1 fails in round 2 while the others wait in a collective: the job must end."""
    proc = run_mpi(
        3,
        ["-m", "hpc_fedprune", "run", "--out", str(tmp_path / "r"), *TINY],
        env={"HPC_FEDPRUNE_FAULT": "rank=1,round=2"},
        timeout=100,
    )
    assert proc.returncode != 0
    assert "injected fault" in proc.stderr
