"""Grouped training as a user runs it: configs/fedavg_grouped_fmnist.yaml on small images."""

from __future__ import annotations

import numpy as np
import pytest

from .conftest import api_run, cli, read_run

SMALL = [
    "data.name=synthetic",
    "data.num_train=320",
    "data.num_test=100",
    "data.shape=[1,28,28]",
    "partition.num_clients=8",
    "partition.min_size=5",
    "federation.clients_per_round=5",
    "federation.rounds=3",
    "training.lr=0.1",
    "runtime.seed=3",
    "output.progress=false",
    "output.checkpoint_every=0",
]


def run(out, capsys, *extra):
    """The run's printed lines and its run file."""
    capsys.readouterr()
    api_run(out, *SMALL, *extra, config="fedavg_grouped_fmnist.yaml")
    return capsys.readouterr().out, read_run(out / "run.h5")


@pytest.mark.timeout(300)
def test_grouped_run_learns_like_the_one_at_a_time_run(tmp_path, capsys):
    stdout, grouped = run(tmp_path / "g", capsys)
    assert "grouped training: up to 8 clients per batched step" in stdout
    _, alone = run(tmp_path / "one", capsys, "training.group_size=1")
    # Same batches and steps, other kernels: close, not bit-identical.
    a = np.frombuffer(alone["flat"], dtype=np.float32)
    g = np.frombuffer(grouped["flat"], dtype=np.float32)
    np.testing.assert_allclose(g, a, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(
        grouped["metrics"]["train_loss"], alone["metrics"]["train_loss"], rtol=1e-5
    )
    assert grouped["metrics"]["train_loss"][-1] < grouped["metrics"]["train_loss"][0]


@pytest.mark.timeout(300)
def test_method_a_group_cannot_train_runs_one_client_at_a_time(tmp_path, capsys):
    stdout, _ = run(tmp_path / "adam", capsys, "training.optimizer=adam")
    assert "grouped training off (optimizer 'adam'" in stdout


def test_mixed_precision_without_groups_is_refused(tmp_path):
    proc = cli("run", "--out", str(tmp_path / "x"), "training.mixed_precision=true")
    assert proc.returncode == 2
    assert "training.mixed_precision" in proc.stderr and "group_size" in proc.stderr
