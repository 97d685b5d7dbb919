"""The command line as a user runs it, in one process (no mpiexec)."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import yaml

from .conftest import TINY, cli


@pytest.mark.timeout(180)
def test_run_writes_the_run_directory(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--out", str(out), *TINY)
    assert proc.returncode == 0, proc.stderr
    assert "round 3/3" in proc.stdout and "run file:" in proc.stdout
    assert (out / "config.yaml").exists()
    lines = (out / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["round"] for line in lines] == [1, 2, 3]
    assert yaml.safe_load((out / "config.yaml").read_text())["federation"]["rounds"] == 3
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["format_version"] == 1
        assert f.attrs["status"] == "finished"
        assert f.attrs["rounds_done"] == 3 and f.attrs["world_size"] == 1
        assert f.attrs["algorithm"] == "fedavg"
        names = [
            "round",
            "test_accuracy",
            "test_loss",
            "train_loss",
            "sparsity",
            "density",
            "bytes_up",
            "bytes_down",
            "bytes_up_dense_equiv",
            "mpi_bytes",
            "clients",
            "wall_s",
        ]
        for name in names:
            assert f["metrics"][name].shape == (3,), name
        assert list(f["metrics/round"][...]) == [1, 2, 3]
        assert np.all(f["metrics/clients"][...] == 5)
        flat = f["model/flat"]
        assert flat.dtype == np.float32
        shapes = json.loads(flat.attrs["shapes"])
        assert sum(int(np.prod(s)) for s in shapes) == flat.shape[0]
        assert len(flat.attrs["names"]) == len(shapes)
        acc = f["metrics/test_accuracy"][...]
        assert acc[-1] > 0.3  # 10 classes: well above chance after 3 rounds
        assert f["partition/sizes"][...].sum() == 400


def test_config_show_prints_every_default():
    proc = cli("config", "show", "federation.rounds=9")
    assert proc.returncode == 0, proc.stderr
    resolved = yaml.safe_load(proc.stdout)
    assert resolved["federation"]["rounds"] == 9
    assert resolved["training"]["batch_size"] == 32


def test_help_on_every_command():
    for args in (
        ["--help"],
        ["run", "--help"],
        ["config", "--help"],
        ["analyze", "--help"],
        ["compare", "--help"],
    ):
        proc = cli(*args)
        assert proc.returncode == 0 and "usage" in proc.stdout.lower(), args


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "federation.round=2"], "unknown config key 'federation.round'"),
        (["run", "--config", "/nonexistent.yaml"], "cannot read config file"),
        (["run", "data.name=cifar10", "data.root=/nonexistent"], "data.root: /nonexistent"),
        (["run", "federation.clients_per_round=100"], "larger than partition.num_clients"),
        (["frobnicate"], "invalid choice"),
    ],
)
def test_bad_input_is_one_line_and_status_2(tmp_path, args, message):
    out = tmp_path / "r"
    proc = cli(*args[:1], *(["--out", str(out)] if args[0] == "run" else []), *args[1:])
    assert proc.returncode == 2, proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and message in lines[0], proc.stderr
    assert not (out / "run.h5").exists()


def test_refuses_to_overwrite_a_run(tmp_path):
    out = tmp_path / "r"
    assert cli("run", "--out", str(out), *TINY, "federation.rounds=1").returncode == 0
    proc = cli("run", "--out", str(out), *TINY, "federation.rounds=1")
    assert proc.returncode == 2 and "already holds a run" in proc.stderr
