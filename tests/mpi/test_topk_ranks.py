"""Top-k with error feedback: clients keep residuals across rounds on their home ranks, so a
run is bit-identical on 1, 2 and 3 ranks, and a resume on another rank count continues it
exactly (the residuals travel through the checkpoint)."""

from __future__ import annotations

import h5py
import pytest

from hpc_fedprune.config import load_config
from hpc_fedprune.sim.cohort import sample_cohort, schedule_cohort
from hpc_fedprune.sim.setup import build_setup
from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

TOPK = [
    *TINY,
    "federation.rounds=4",
    "algorithm.name=topk",
    "algorithm.topk.density=0.05",
    "algorithm.topk.momentum=0.5",
    "algorithm.topk.warmup_rounds=2",
    "client_state.budget_mb=0.02",  # below one client's state (2 x 19.9 kB): all spill
]
pytestmark = [pytest.mark.mpi]


def launch(n, out, *extra, env=None):
    args = ["-m", "hpc_fedprune", "run", "--out", str(out), *TOPK, *extra]
    return run_mpi(n, args, env=env, timeout=170)


@pytest.mark.timeout(400)
def test_one_two_three_ranks_are_bit_identical(tmp_path):
    runs = {}
    for n in (1, 2, 3):
        out = tmp_path / f"n{n}"
        proc = launch(n, out, "output.checkpoint_every=0", f"client_state.spill_dir={tmp_path}")
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = read_run(out / "run.h5")
    assert runs[1]["metrics"]["upload_density"].tolist() == [0.25, 0.0625, 0.05, 0.05]
    assert_same_results(runs[1], runs[2])
    assert_same_results(runs[1], runs[3])
    assert not list(tmp_path.glob("hpc_fedprune-state-*"))  # spill files removed at the end
    # The exchange is only exercised if some client trains on different ranks over the run.
    sizes = build_setup(load_config(tmp_path / "n3" / "config.yaml"), 1, "cpu").sizes
    for n in (2, 3):
        assert clients_on_several_ranks(sizes, n), f"no client changed rank on {n} ranks"


def clients_on_several_ranks(sizes, world_size):
    """Clients that train on more than one rank over the run's 4 rounds (seed 3, 8 / 5)."""
    seen: dict[int, set[int]] = {}
    for rnd in range(1, 5):
        cohort = sample_cohort(3, rnd, 8, 5)
        for rank, mine in enumerate(schedule_cohort(cohort, sizes, world_size)):
            for c in mine.tolist():
                seen.setdefault(c, set()).add(rank)
    return [c for c, ranks in seen.items() if len(ranks) > 1]


@pytest.fixture(scope="module")
def one_rank(tmp_path_factory):
    """The uninterrupted run on one rank."""
    ref = tmp_path_factory.mktemp("ref") / "run"
    assert launch(1, ref, "output.checkpoint_every=0").returncode == 0
    return read_run(ref / "run.h5")


@pytest.mark.timeout(400)
@pytest.mark.parametrize("first_ranks, resume_ranks", [(2, 3), (3, 2)])
def test_resume_with_residuals_on_another_rank_count(tmp_path, one_rank, first_ranks, resume_ranks):
    out = tmp_path / "run"
    crashed = launch(
        first_ranks,
        out,
        "output.checkpoint_every=2",
        f"client_state.spill_dir={tmp_path / 'spill'}",  # a killed rank leaves its file
        env={"HPC_FEDPRUNE_FAULT": f"rank={first_ranks - 1},round=3,point=train,action=kill"},
    )
    assert crashed.returncode != 0
    # Every client of rounds 1-2 has a state, whichever rank is its home: the states came
    # to rank 0 one per step (the budget is below one state), one row each.
    trained = {c for rnd in (1, 2) for c in sample_cohort(3, rnd, 8, 5).tolist()}
    with h5py.File(out / "checkpoint.h5", "r") as f:
        assert f["checkpoint"].attrs["round"] == 2
        held = f["checkpoint/clients/id"][...].tolist()
        assert sorted(held) == sorted(trained) and len(held) == len(set(held))
        assert f["checkpoint/clients/residual"].shape[0] == len(held)
        assert f["checkpoint/clients/momentum"].shape[0] == len(held)
    resumed = run_mpi(
        resume_ranks, ["-m", "hpc_fedprune", "run", "--resume", str(out)], timeout=170
    )
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert_same_results(one_rank, read_run(out / "run.h5"))
