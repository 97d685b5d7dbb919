"""Launch checks that need no MPI launcher."""

import pytest

from hpc_fedprune.comm.world import World, check_launch
from hpc_fedprune.errors import InputError


def test_srun_without_pmi_is_refused():
    world = World.from_mpi()  # a singleton world of size 1 under pytest
    env = {"SLURM_PROCID": "2", "SLURM_STEP_NUM_TASKS": "4", "SLURM_STEP_ID": "0"}
    with pytest.raises(InputError, match="srun started 4 tasks"):
        check_launch(world, env)


@pytest.mark.parametrize(
    "env",
    [
        {},  # not under Slurm
        {"SLURM_PROCID": "0", "SLURM_STEP_NUM_TASKS": "1", "SLURM_STEP_ID": "0"},  # srun -n 1
        {"SLURM_PROCID": "0", "SLURM_NTASKS": "4", "SLURM_STEP_ID": "batch"},  # in the batch script
    ],
)
def test_single_rank_launches_are_fine(env):
    check_launch(World.from_mpi(), env)
