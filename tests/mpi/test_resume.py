"""Crash-safe checkpoints and exact resume (SIGKILL at several points, SIGTERM, rank changes).

Every scenario ends with a run whose /model/flat and /metrics are bit-identical to the
same run left uninterrupted.
"""

from __future__ import annotations

import shutil

import h5py
import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

# FedSparsify writes mask history; server momentum is algorithm state that must survive.
CONFIG = [
    *TINY,
    "federation.rounds=6",
    "output.checkpoint_every=2",
    "algorithm.name=fedsparsify",
    "federation.server_momentum=0.5",
]
pytestmark = [pytest.mark.mpi]


def launch(n, out, *extra, fault=None, timeout=200):
    env = {"HPC_FEDPRUNE_FAULT": fault} if fault else None
    return run_mpi(
        n,
        ["-m", "hpc_fedprune", "run", "--out", str(out), *CONFIG, *extra],
        env=env,
        timeout=timeout,
    )


def resume(n, out, timeout=200):
    return run_mpi(n, ["-m", "hpc_fedprune", "run", "--resume", str(out)], timeout=timeout)


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = launch(2, out)
    assert proc.returncode == 0, proc.stderr
    return read_run(out / "run.h5")


@pytest.mark.timeout(600)
@pytest.mark.parametrize(
    "fault, first_ranks, resume_ranks",
    [
        ("rank=1,round=4,point=train,action=kill", 2, 2),  # during local training
        ("rank=0,round=5,point=reduce,action=kill", 2, 3),  # at the reduction; more ranks
        ("rank=0,round=4,point=checkpoint,action=kill", 3, 1),  # mid-checkpoint; fewer ranks
        ("rank=0,round=3,point=history,action=kill", 2, 2),  # mid history write
    ],
)
def test_sigkill_then_resume_is_bit_identical(
    tmp_path, reference, fault, first_ranks, resume_ranks
):
    out = tmp_path / "run"
    crashed = launch(first_ranks, out, fault=fault)
    assert crashed.returncode != 0
    resumed = resume(resume_ranks, out)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    result = read_run(out / "run.h5")
    assert result["attrs"]["status"] == "finished"
    assert_same_results(reference, result)
    with h5py.File(out / "run.h5", "r") as f:
        assert list(f["metrics/round"][...]) == [1, 2, 3, 4, 5, 6]
        assert (
            len(f["masks/rounds"])
            == f["masks"][next(k for k in f["masks"] if k != "rounds")].shape[0]
        )


@pytest.mark.timeout(300)
def test_sigterm_checkpoints_and_exits_75(tmp_path, reference):
    out = tmp_path / "run"
    stopped = launch(2, out, fault="rank=1,round=3,point=train,action=term")
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    assert "resume with" in stopped.stdout
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["status"] == "interrupted" and f.attrs["rounds_done"] == 3
    resumed = resume(2, out)
    assert resumed.returncode == 0, resumed.stderr
    assert_same_results(reference, read_run(out / "run.h5"))
    # Resuming a finished run does nothing and says so.
    again = resume(1, out)
    assert again.returncode == 0 and "finished" in again.stdout


@pytest.mark.timeout(300)
def test_damaged_checkpoint_falls_back_to_the_previous(tmp_path, reference):
    out = tmp_path / "run"
    stopped = launch(2, out, fault="rank=0,round=5,point=train,action=term")
    assert stopped.returncode == 75
    # checkpoints at rounds 2, 4 and 5 (the signal): damage the newest one.
    data = bytearray((out / "checkpoint.h5").read_bytes())
    data[len(data) // 2 : len(data) // 2 + 4096] = b"\0" * 4096
    (out / "checkpoint.h5").write_bytes(bytes(data))
    resumed = resume(2, out)
    assert resumed.returncode == 0, resumed.stderr
    assert "damaged" in resumed.stderr
    assert_same_results(reference, read_run(out / "run.h5"))


@pytest.mark.timeout(120)
def test_no_intact_checkpoint_is_a_clear_error(tmp_path):
    out = tmp_path / "run"
    assert launch(1, out, fault="rank=0,round=3,point=train,action=term").returncode == 75
    for name in ("checkpoint.h5", "checkpoint.prev.h5"):
        if (out / name).exists():
            (out / name).write_bytes(b"not hdf5")
    proc = resume(1, out)
    assert proc.returncode == 2
    assert "no intact checkpoint" in proc.stderr.splitlines()[-1]
    shutil.rmtree(out)
