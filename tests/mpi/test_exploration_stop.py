"""A stop signal during AutoFLIP's exploration phase: saved, exit 75, resumed bit-identically.

The signal comes from the fault hook (``point=explore``: after the base epoch of a rank's
n-th explorer), so the test does not depend on timing. The run directory exists from the
start; the stopped run keeps the finished explorers in ``exploration_state.h5``; the
resumed run (on another number of ranks) trains only the others and ends with the same
/model/flat, /metrics and /exploration bytes as a run never stopped.
"""

from __future__ import annotations

import h5py
import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi
from tests.mpi.test_autoflip_ranks import AUTOFLIP, read_exploration

pytestmark = [pytest.mark.mpi]

CONFIG = [*TINY, *AUTOFLIP, "output.progress=true"]  # 6 explorers: 3 steps on 2 ranks


def launch(n, out, fault=None):
    env = {"HPC_FEDPRUNE_FAULT": fault} if fault else None
    args = ["-m", "hpc_fedprune", "run", "--out", str(out), *CONFIG]
    return run_mpi(n, args, env=env, timeout=150)


def resume(n, out):
    return run_mpi(n, ["-m", "hpc_fedprune", "run", "--resume", str(out)], timeout=150)


def saved_clients(out) -> list[int]:
    with h5py.File(out / "exploration_state.h5", "r") as f:
        return f["clients"][...].tolist()


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    out = tmp_path_factory.mktemp("ref") / "run"
    proc = launch(2, out)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not (out / "exploration_state.h5").exists()  # removed when the run finished
    return read_run(out / "run.h5"), read_exploration(out / "run.h5")


@pytest.mark.timeout(400)
def test_stop_in_the_middle_saves_finished_explorers_and_resumes_exactly(tmp_path, reference):
    out = tmp_path / "run"
    # Rank 0 is signalled in its second explorer: it says at once what it finishes and
    # abandons that explorer; rank 1 finishes its second one; both stop after step 2.
    stopped = launch(2, out, fault="rank=0,round=2,point=explore,action=term")
    assert stopped.returncode == 75, stopped.stdout + stopped.stderr
    assert "SIGTERM received: stopping after the exploration step in progress" in stopped.stdout
    assert "stopped by signal during the exploration phase; 3 of 6 explorers saved" in (
        stopped.stdout
    )
    with h5py.File(out / "run.h5", "r") as f:
        assert f.attrs["status"] == "interrupted"
        assert "exploration" not in f and f.attrs["rounds_done"] == 0
    assert len(saved_clients(out)) == 3
    resumed = resume(3, out)
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert "exploration: 6 explorers, 3 saved earlier" in resumed.stdout
    # Only the 3 explorers left are trained (one per rank): rank 0 reports one.
    assert "explorer 1/1 of rank 0 done" in resumed.stdout
    run, explored = reference
    assert_same_results(run, read_run(out / "run.h5"))
    again = read_exploration(out / "run.h5")
    assert again["attrs"] == explored["attrs"]
    for name, values in explored["data"].items():
        assert again["data"][name].tobytes() == values.tobytes(), name
