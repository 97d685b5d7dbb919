"""Method options give bit-identical runs on 1 and 3 ranks: uniform client weights with
FedSparsify's strict vote and multiplicative schedule, Top-k on a BatchNorm model, FedDST
readjusting before its last local epoch from a sparse-aware init."""

from __future__ import annotations

import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "options",
    [
        [
            "federation.weighting=uniform",
            "algorithm.name=fedsparsify",
            "algorithm.fedsparsify.variant=local",
            "algorithm.fedsparsify.vote=strict",
            "algorithm.fedsparsify.schedule=multiplicative",
            "algorithm.fedsparsify.rate=0.3",
        ],
        [
            "algorithm.name=topk",
            "algorithm.topk.density=0.05",
            "model.name=resnet18_cifar",
            "model.resnet18_cifar.width=4",
            "data.shape=[3, 8, 8]",
        ],
        [
            "algorithm.name=feddst",
            "algorithm.feddst.sparsity=0.8",
            "algorithm.feddst.readjust_interval=1",
            "algorithm.feddst.alpha=0.5",
            "training.local_epochs=2",
            "model.init=sparse_kaiming",
        ],
    ],
    ids=["uniform_fedsparsify_strict_mult", "topk_batchnorm", "feddst_two_epochs"],
)
def test_one_and_three_ranks_are_bit_identical(tmp_path, options):
    runs = {}
    for n in (1, 3):
        out = tmp_path / f"n{n}"
        args = ["-m", "hpc_fedprune", "run", "--out", str(out), *TINY, *options]
        proc = run_mpi(n, [*args, "output.checkpoint_every=0"], timeout=140)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = read_run(out / "run.h5")
    assert runs[3]["attrs"]["world_size"] == 3
    assert_same_results(runs[1], runs[3])
