"""AutoFLIP as whole runs: every config for a round or two on generated data of the right
shape, the run file's /exploration and cost columns, and resume without a second exploration."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from hpc_fedprune.pruning import pruned_count
from tests.helpers import run_mpi

from .conftest import api_run, assert_same_results, read_run

# Generated data shaped like each data set; a thin CNN and a short exploration.
SMALL = [
    "data.name=synthetic",
    "data.num_train=600",
    "data.num_test=100",
    "model.cnn.hidden=4",
    "model.cnn.fc=16",
    "training.local_epochs=1",
    "training.batch_size=64",
    "training.lr=0.003",
    "federation.rounds=2",
    "federation.eval_every=1",
    "algorithm.autoflip.epochs=2",
    "algorithm.autoflip.patience=1",
    "output.progress=false",
    "output.checkpoint_every=0",
]
CONFIGS = {
    "autoflip_fmnist_patho": ["data.shape=[1,28,28]", "data.num_classes=10"],
    "autoflip_fmnist_dirichlet": ["data.shape=[1,28,28]", "data.num_classes=10"],
    "autoflip_cifar10_patho": ["data.shape=[3,32,32]", "data.num_classes=10"],
    "autoflip_cifar100_dirichlet": [
        "data.shape=[3,32,32]",
        "data.num_classes=100",
        "data.num_train=1200",
        "partition.min_size=5",
    ],
}


@pytest.mark.timeout(300)
@pytest.mark.parametrize("name", list(CONFIGS))
def test_config_runs_and_records_exploration(tmp_path, name):
    out = tmp_path / name
    api_run(out, *SMALL, *CONFIGS[name], config=f"{name}.yaml")
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["algorithm"] == "autoflip"
        ex, m = f["exploration"], f["metrics"]
        assert ex["clients"][...].tolist() == list(range(20))  # explorer_fraction 1.0
        assert ex.attrs["client_epochs"] == 20 + int(ex["epochs"][...].sum())
        scores = ex["scores"][...]
        prunable = np.unpackbits(f["model/prunable"][...], count=scores.size).astype(bool)
        assert scores.min() == 0.0 and scores.max() == 1.0 and not scores[~prunable].any()
        mask = np.unpackbits(f["model/mask"][...], count=scores.size).astype(bool)
        pruned = ~mask & prunable
        assert int(pruned.sum()) == pruned_count(int(prunable.sum()), 0.3)
        assert scores[pruned].max() <= scores[mask & prunable].min()  # the tau cut
        assert f["masks/rounds"][...].tolist() == [1]  # fixed mask, recorded once
        up, down = m["exploration_bytes_up"][...], m["exploration_bytes_down"][...]
        assert up[0] == ex.attrs["bytes_up"] > 0 and down[0] == ex.attrs["bytes_down"] > 0
        assert not up[1:].any() and m["exploration_client_epochs"][0] == ex.attrs["client_epochs"]
        values = m["bytes_up_values_only"][...]
        assert m["bytes_up"][0] - up[0] == m["bytes_up"][1]  # round 1 includes exploration
        assert values[0] == values[1]
        assert "local_test_accuracy" in m  # local test splits of the configs
        assert np.isfinite(m["test_accuracy"][...]).all()


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_resume_keeps_the_mask_and_does_not_explore_again(tmp_path):
    overrides = [
        *SMALL,
        *CONFIGS["autoflip_fmnist_patho"],
        "federation.rounds=4",
        "algorithm.autoflip.structured=true",
    ]
    config = ["--config", "configs/autoflip_fmnist_patho.yaml", *overrides]
    ref, out = tmp_path / "ref", tmp_path / "run"
    api_run(ref, *overrides, config="autoflip_fmnist_patho.yaml")  # the uninterrupted run
    env = {"HPC_FEDPRUNE_FAULT": "rank=0,round=3,point=train,action=kill"}
    args = ["-m", "hpc_fedprune", "run", "--out", str(out), *config, "output.checkpoint_every=2"]
    assert run_mpi(1, args, env=env, timeout=200).returncode != 0
    proc = run_mpi(2, ["-m", "hpc_fedprune", "run", "--resume", str(out)], timeout=200)
    assert proc.returncode == 0, proc.stderr
    # A second exploration would report its cost again in round 3.
    assert_same_results(read_run(ref / "run.h5"), read_run(out / "run.h5"))
    with h5py.File(ref / "run.h5", "r") as a, h5py.File(out / "run.h5", "r") as b:
        assert a["exploration/scores"][...].tobytes() == b["exploration/scores"][...].tobytes()
        assert a["model/mask"][...].tobytes() == b["model/mask"][...].tobytes()
