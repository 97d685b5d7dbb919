"""PruneFL and FedDST as whole runs from their configs (LeNet-5 on small generated images)."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_fedprune.config import load_config
from hpc_fedprune.pruning import erk_counts, pruned_count
from hpc_fedprune.sim.setup import build_setup

from .conftest import api_run

SMALL = [
    "data.name=synthetic",
    "data.num_train=320",
    "data.num_test=100",
    "data.shape=[1,28,28]",
    "partition.num_clients=8",
    "partition.min_size=5",
    "federation.clients_per_round=4",
    "federation.rounds=6",
    "training.lr=0.1",
    "runtime.seed=3",
    "output.progress=false",
    "output.checkpoint_every=0",
]


def run(out, config, *extra):
    return api_run(out, *SMALL, *extra, config=f"{config}.yaml")


def global_masks(result):
    names = [t.name for t in result.mask_tensors]
    return names, [{n: r.mask(n).ravel() for n in names} for r in result.iter_masks()]


def flat(record, names):
    return np.concatenate([record[n] for n in names])


@pytest.mark.timeout(300)
def test_prunefl_run_regrows_follows_the_schedule_and_pays_for_gradients(tmp_path):
    result = run(tmp_path / "pf", "prunefl_fmnist", "algorithm.prunefl.reconfig_interval=2")
    assert result.mask_rounds.tolist() == [1, 2, 4, 6]  # initial mask, then every 2 rounds
    names, records = global_masks(result)
    masks = [flat(r, names) for r in records]
    n = masks[0].size
    config = load_config(tmp_path / "pf" / "config.yaml")
    schedule = build_setup(config, 1, "cpu").algorithm.schedule
    assert int((~masks[0]).sum()) == pruned_count(n, 0.5)  # the initial pruning
    for rnd, mask in zip((2, 4, 6), masks[1:], strict=True):
        assert int((~mask).sum()) == pruned_count(n, schedule(rnd))
    assert schedule(6) == 0.9
    regrown = [int((b & ~a).sum()) for a, b in zip(masks, masks[1:], strict=False)]
    assert sum(regrown) > 0  # weights pruned earlier came back
    # Reconfiguration rounds carry each client's gradient over the prunable set (its
    # non-zeros, with positions) beside the values over the mask of the round before.
    per_client = result.metrics["bytes_up"] / result.metrics["clients"]
    assert np.all(per_client[[1, 3, 5]] - per_client[[0, 2, 4]] > n)


@pytest.mark.timeout(300)
def test_feddst_run_keeps_erk_counts_and_sends_client_masks(tmp_path):
    result = run(
        tmp_path / "fd",
        "feddst_fmnist",
        "algorithm.feddst.readjust_interval=2",
        "algorithm.feddst.alpha=0.5",
    )
    config = load_config(tmp_path / "fd" / "config.yaml")
    algo = build_setup(config, 1, "cpu").algorithm
    counts = erk_counts(algo.layout, algo.prunable, 1.0 - config.algorithm.feddst.sparsity)
    names, records = global_masks(result)
    assert result.mask_rounds[0] == 1 and set(result.mask_rounds[1:]) <= {2, 4}
    assert len(records) >= 2  # readjustment moved the global mask
    for record in records:
        assert {n: int(m.sum()) for n, m in record.items()} == counts
    client_rounds = {rec.round for rec in result.iter_client_masks()}
    assert client_rounds == {2, 4}  # clients readjust in rounds 2 and 4 (alpha_t = 0 at 6)
    # Outside readjustments values travel over the global mask (headers only beside them);
    # a readjusting client also sends its mask.
    m = result.metrics
    beside = (m["bytes_up"] - m["bytes_up_values_only"]) / m["clients"]
    assert np.all(beside[[0, 2, 4, 5]] < 100) and np.all(beside[[1, 3]] > 1000)
    assert np.all(result.metrics["sparsity"] == result.metrics["sparsity"][0])
