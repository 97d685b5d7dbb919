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

# Sleeps of a waiting rank (`World.set_waiting`): from 0.1 ms, doubling up to 5 ms, so a
# short wait costs little latency and a long one few wake-ups.
MIN_SLEEP = 1e-4
MAX_SLEEP = 5e-3


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
    node_cores : int
        Distinct cores that the ranks of this node may run on (the union of their CPU
        affinities); fewer than ``local_size`` means ranks share cores.
    sleeps : bool
        This rank sleeps between tests of a nonblocking request instead of spinning in a
        blocking MPI call (`set_waiting`; from the start: where the node is oversubscribed).
    """

    comm: Any
    rank: int = field(init=False)
    size: int = field(init=False)
    local_rank: int = field(init=False)
    local_size: int = field(init=False)
    node_cores: int = field(init=False)
    sleeps: bool = field(init=False, default=False)

    def __post_init__(self) -> None:
        MPI = _mpi()
        self.rank = self.comm.Get_rank()
        self.size = self.comm.Get_size()
        node = self.comm.Split_type(MPI.COMM_TYPE_SHARED, key=self.rank)
        try:
            self.local_rank = node.Get_rank()
            self.local_size = node.Get_size()
            cores = node.allgather(_cores()) if self.local_size > 1 else [_cores()]
            self.node_cores = len(set().union(*cores))
        finally:
            node.Free()
        self.set_waiting("auto")

    @classmethod
    def from_mpi(cls) -> World:
        """The world of ``MPI.COMM_WORLD``."""
        return cls(_mpi().COMM_WORLD)

    @property
    def is_root(self) -> bool:
        return self.rank == 0

    @property
    def oversubscribed(self) -> bool:
        """True when this node has more ranks than cores for them."""
        return self.local_size > self.node_cores

    def set_waiting(self, mode: str) -> None:
        """How this rank waits for the others: ``spin``, ``sleep`` or ``auto`` (the default).

        MPI libraries busy-poll inside blocking calls. Where ranks share cores, a rank that
        waits (for clients trained elsewhere, for the rank that builds the node's data, for
        rank 0 writing the run file) then takes CPU time from the ranks it waits for.
        ``sleep`` makes the waits of this class (`wait`, and the collectives built on it)
        test their nonblocking request and sleep in between, from `MIN_SLEEP` doubling up
        to `MAX_SLEEP` seconds; ``auto`` sleeps where this node has more ranks than cores.
        The collectives are the same either way, only how each rank waits differs, so
        ranks may wait differently (nodes differ) and results never change.
        """
        if mode not in ("auto", "spin", "sleep"):
            raise InputError(f"runtime.wait: {mode!r} is not one of auto, spin, sleep")
        self.sleeps = mode == "sleep" or (mode == "auto" and self.oversubscribed)

    def wait(self, request) -> None:
        """Complete the nonblocking MPI ``request``: spin in ``Wait``, or sleep between tests."""
        if not self.sleeps:
            request.Wait()
            return
        pause = MIN_SLEEP
        while not request.Test():
            time.sleep(pause)
            pause = min(2 * pause, MAX_SLEEP)

    def quiet_barrier(self) -> None:
        """Collective: a barrier completed by `wait` (so a sleeping rank sleeps in it).

        Placed before a collective that some ranks reach long after others (the round's
        reduction, while other ranks still train): the early ones wait here, asleep when
        waits sleep, instead of spinning inside the collective.
        """
        if self.size > 1:
            self.wait(self.comm.Ibarrier())

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
        # Ranks arrive here after different amounts of work (imports, the data set): they
        # wait in `any_flag`, and only gather the messages when some rank has one.
        if not self.any_flag(error is not None):
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
        send = np.array([int(bool(flag))], dtype=np.int64)
        out = np.empty_like(send)
        self.wait(self.comm.Iallreduce(send, out, op=_mpi().MAX))
        return bool(out[0])

    def sum_int64(self, values: np.ndarray) -> np.ndarray:
        """Exact element-wise sum of int64 arrays over all ranks, result on every rank."""
        if self.size == 1:
            return values.copy()
        send = np.ascontiguousarray(values, dtype=np.int64)
        out = np.empty_like(send)
        self.wait(self.comm.Iallreduce(send, out, op=_mpi().SUM))
        return out


def _cores() -> set[int]:
    """The CPUs this process may run on."""
    try:
        return set(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # not Linux
        return set(range(os.cpu_count() or 1))


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
