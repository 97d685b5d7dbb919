"""The MPI world as the rest of the program sees it: ranks, devices, agreement on errors.

This module and its siblings in `comm` are the only code that imports mpi4py. The
communicator is always an explicit attribute of a `World` (never a module global), so
tests can run a world on ``COMM_SELF`` or a sub-communicator.
"""

from __future__ import annotations

import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ..errors import EXIT_INTERNAL, InputError


def _mpi():
    from mpi4py import MPI

    return MPI


@dataclass
class World:
    """A communicator with the facts every layer asks about.

    Attributes
    ----------
    comm : mpi4py.MPI.Comm
        The communicator of the run.
    rank, size : int
        This rank and the number of ranks.
    local_rank, local_size : int
        Rank and size within the node (from a shared-memory split, so it works under
        mpirun and srun alike).
    """

    comm: Any
    rank: int = field(init=False)
    size: int = field(init=False)
    local_rank: int = field(init=False)
    local_size: int = field(init=False)

    def __post_init__(self) -> None:
        MPI = _mpi()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            self.local_rank = node.Get_rank()
            self.local_size = node.Get_size()
        finally:
            node.Free()

    @classmethod
    def from_mpi(cls) -> World:
        """The world of ``MPI.COMM_WORLD``."""
        return cls(_mpi().COMM_WORLD)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    def finalize(self) -> None:
        """Finalise MPI early (collective), e.g. before exiting with a non-zero status."""
        MPI = _mpi()
        if not MPI.Is_finalized():
            MPI.Finalize()

    def barrier(self) -> None:
        self.comm.Barrier()

    def agree_on_input_errors(self, error: InputError | None) -> None:
        """Collective: if any rank hit bad input, raise the same error on every rank.

        Bad input is usually seen by every rank at once (they all read the same config),
        but a file missing on one node only is seen by some. Rank 0 reports the message of
        the lowest failing rank, and every rank leaves with exit status 2.
        """
        message = None if error is None else str(error)
        if self.size == 1:
            if error is not None:
                raise error
            return
        messages = self.comm.allgather(message)
        first = next((m for m in messages if m is not None), None)
        if first is not None:
            raise InputError(first)

    def abort_on_exception(self, exc: BaseException) -> None:
        """Print the traceback of an internal failure and end the whole job promptly.

        Other ranks may be blocked in a collective waiting for this one; only MPI_Abort
        releases them, so a crash on one rank never hangs the job.
        """
        # The one-line cause first and everything in one write: MPI_Abort makes the launcher
        # tear the job down, and whatever it has not forwarded yet is lost.
        cause = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        trace = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        sys.stderr.write(f"[rank {self.rank}] internal error: {cause}\n{trace}")
        sys.stderr.flush()
        if self.size > 1:
            time.sleep(0.5)  # let the launcher forward the message before the abort
            self.comm.Abort(EXIT_INTERNAL)

    # Small-object helpers (lowercase mpi4py: pickled Python objects).
    def gather_objects(self, obj: Any) -> list[Any] | None:
        if self.size == 1:
            return [obj]
        return self.comm.gather(obj, root=0)

    def bcast_object(self, obj: Any) -> Any:
        if self.size == 1:
            return obj
        return self.comm.bcast(obj, root=0)

    def any_flag(self, flag: bool) -> bool:
        """Collective: True on every rank if ``flag`` is True on any rank."""
        if self.size == 1:
            return bool(flag)
        return bool(self.comm.allreduce(int(bool(flag)), op=_mpi().MAX))

    def sum_int64(self, values: np.ndarray) -> np.ndarray:
        """Exact element-wise sum of int64 arrays over all ranks, result on every rank."""
        if self.size == 1:
            return values.copy()
        out = np.empty_like(values)
        self.comm.Allreduce(values, out, op=_mpi().SUM)
        return out


def check_launch(world: World, environ=None) -> None:
    """Refuse a launch where srun started N separate single-rank worlds.

    Without a PMI that matches the MPI library (``srun --mpi=pmi2`` for MPICH), every task
    initialises MPI alone and the job would silently run N identical copies of the
    experiment. Slurm still tells each task how many tasks the step has.

    Raises
    ------
    InputError
        The step has several tasks but this MPI world has one rank.
    """
    env = os.environ if environ is None else environ
    tasks = env.get("SLURM_STEP_NUM_TASKS") or env.get("SLURM_NTASKS")
    if world.size != 1 or "SLURM_PROCID" not in env or not tasks or not tasks.isdigit():
        return
    if int(tasks) > 1 and env.get("SLURM_STEP_ID", "").isdigit():
        raise InputError(
            f"srun started {tasks} tasks but each sees an MPI world of size 1 (no PMI): "
            "launch with `srun --mpi=pmi2` (MPICH) or `--mpi=pmix` (Open MPI), or with mpirun"
        )


def pick_device(preference: str, local_rank: int) -> str:
    """The torch device of this rank: node-local rank modulo the visible GPUs, else CPU.

    Parameters
    ----------
    preference : {'auto', 'cpu', 'cuda'}
        ``cuda`` without a GPU is an `InputError`; ``auto`` falls back to the CPU.
    local_rank : int
        Rank within the node.
    """
    import torch

    if preference == "cpu":
        return "cpu"
    n_gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if n_gpus == 0:
        if preference == "cuda":
            raise InputError("runtime.device is cuda but no GPU is visible on this node")
        return "cpu"
    return f"cuda:{local_rank % n_gpus}"


def limit_threads(threads: int) -> int:
    """Torch threads per rank: ``threads``, or with 0 ``OMP_NUM_THREADS`` (else 1).

    Ranks sharing cores must not oversubscribe them: one thread each is the default.
    Returns the number set.
    """
    import torch

    if threads <= 0:
        env = os.environ.get("OMP_NUM_THREADS", "")
        threads = int(env) if env.isdigit() and int(env) > 0 else 1
    torch.set_num_threads(threads)
    return threads
