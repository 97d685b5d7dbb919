"""FedDIP as whole runs: nested masks, s_T at the end, round-1 ERK masks, free regrowth, configs."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpc_fedprune.pruning import kept_count

from .conftest import api_run

# LeNet-5 (conv layers) on small generated images; the mask changes in rounds 1, 3, 5, 7, 9.
RUN = [
    "algorithm.name=feddip",
    "data.num_train=320",
    "data.num_test=100",
    "data.shape=[1,28,28]",
    "model.name=lenet5",
    "partition.num_clients=8",
    "partition.min_size=5",
    "federation.clients_per_round=4",
    "federation.rounds=9",
    "training.batch_size=32",
    "training.lr=0.1",
    "training.weight_decay=0.0005",
    "algorithm.feddip.reconfig_interval=2",
    "runtime.seed=3",
    "output.progress=false",
    "output.checkpoint_every=0",
]


def run(out, *extra):
    return api_run(out, *RUN, *extra)


def global_masks(result):
    """Every recorded global mask, concatenated over the prunable tensors."""
    names = [t.name for t in result.mask_tensors]
    return [np.concatenate([r.mask(n).ravel() for n in names]) for r in result.iter_masks()]


def regrown(masks):
    """Per mask change: how many entries the new mask keeps that the old one pruned."""
    return [int((b & ~a).sum()) for a, b in zip(masks, masks[1:], strict=False)]


@pytest.mark.timeout(300)
def test_nested_masks_final_sparsity_and_round_one_erk_masks(tmp_path):
    result = run(tmp_path / "nested")
    assert result.mask_rounds.tolist() == [1, 3, 5, 7, 9]
    masks = global_masks(result)
    assert regrown(masks) == [0, 0, 0, 0]
    n = masks[0].size
    _, final = result.final_model()
    with h5py.File(result.path, "r") as f:
        prunable = np.unpackbits(f["model/prunable"][...], count=final.size).astype(bool)
    assert abs(int((~final & prunable).sum()) - 0.9 * n) <= 1  # s_T within one weight
    first = next(result.iter_client_masks())  # round 1: every client its own ERK mask
    names = [t.name for t in result.client_mask_tensors]
    k = len(first.clients)
    own = np.concatenate([first.masks(m).reshape(k, -1) for m in names], 1)
    assert first.round == 1 and len({row.tobytes() for row in own}) == k
    assert all(int(row.sum()) == kept_count(n, 0.5) for row in own)
    up, dense = result.metrics["bytes_up"], result.metrics["bytes_up_dense_equiv"]
    assert up[1] < 0.6 * dense[1]  # w * M travels as values over the mask
    lam = result.metrics["penalty_lambda"]
    assert lam[0] == 0.0 < lam[1] <= lam[-1] < 1e-3


@pytest.mark.timeout(300)
def test_free_regrowth_brings_pruned_weights_back(tmp_path):
    # Pruned weights restart from 0 every round, so regrowing one takes some local work.
    result = run(
        tmp_path / "free",
        "algorithm.feddip.regrowth=free",
        "algorithm.feddip.upload=dense",
        "training.local_epochs=3",
        "training.lr=0.2",
    )
    assert sum(regrown(global_masks(result))) > 0
    # Dense uploads carry the moved masked coordinates: far more than the 10% the mask keeps.
    kept = int(result.final_model()[1].sum())
    assert result.metrics["bytes_up"][-1] > 2 * 4 * kept * result.metrics["clients"][-1]


@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "config, classes", [("feddip_cifar10_alexnet", 10), ("feddip_cifar100_resnet18", 100)]
)
def test_cifar_configs_run_one_round_on_generated_data(tmp_path, config, classes):
    out = tmp_path / "r"
    run = api_run(
        out,
        "data.name=synthetic",
        "data.shape=[3,32,32]",
        f"data.num_classes={classes}",
        "data.num_train=200",
        "data.num_test=50",
        "federation.rounds=1",
        "federation.clients_per_round=1",
        "training.local_epochs=1",
        "output.progress=false",
        config=f"{config}.yaml",
    )
    assert run.metrics["sparsity"][0] == pytest.approx(0.5, abs=1e-6)
