"""Top-k with error feedback as a whole run from its config (LeNet-5 on small generated
images): uplink bytes are the encoding of k values with their positions, and the residual
changes the run."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_fedprune.comm.encodings import plan_from_counts
from hpc_fedprune.pruning.topk import keep_count

from .conftest import api_run

SMALL = [
    "data.name=synthetic",
    "data.num_train=320",
    "data.num_test=100",
    "data.shape=[1,28,28]",
    "partition.num_clients=6",
    "partition.min_size=5",
    "federation.clients_per_round=4",
    "federation.rounds=4",
    "training.lr=0.1",
    "runtime.seed=3",
    "output.progress=false",
    "output.checkpoint_every=0",
    "algorithm.topk.warmup_rounds=2",
]


def run(out, *extra):
    return api_run(out, *SMALL, *extra, config="topk_fmnist_lenet5.yaml")


@pytest.mark.timeout(300)
def test_topk_run_sends_k_entries_with_positions_and_feedback_matters(tmp_path):
    result = run(tmp_path / "ef")
    n = result.final_model()[0].size
    densities = result.metrics["upload_density"].tolist()
    assert densities == [0.25, 0.0625, 0.01, 0.01]  # warm-up, then the config's 1%
    uplink = result.client_uplink()
    for rnd, size in zip(uplink["round"], uplink["bytes"], strict=True):
        k = keep_count(n, densities[rnd - 1])
        assert size == plan_from_counts(n, k).total_bytes  # k values and their positions
    assert result.metrics["bytes_up"][-1] < result.metrics["bytes_up_dense_equiv"][-1] / 20
    assert np.all(result.metrics["sparsity"] < 0.5)  # the global model stays dense
    # Clients sampled again carry their residual: without it the run differs.
    plain = run(tmp_path / "plain", "algorithm.topk.error_feedback=false")
    assert not np.array_equal(result.final_model()[0], plain.final_model()[0])
    np.testing.assert_array_equal(uplink["bytes"], plain.client_uplink()["bytes"])
