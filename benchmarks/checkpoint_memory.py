"""Rank 0's memory for one checkpoint with many clients' state (Top-k with error feedback).

Every rank keeps the states of its home clients (``client % ranks``) in its
`ClientStateStore` (a float32 residual and momentum of ``--length`` entries per client,
as Top-k with momentum correction keeps; ``--budget-mb`` in memory, the rest spilled),
then all ranks take one checkpoint as the round loop does and rank 0 writes it through
`RunDir.write_checkpoint`. Rank 0's peak resident memory is reset just before the
checkpoint (``/proc/self/clear_refs``), so ``checkpoint_peak_mb`` is the most the
checkpoint added to what rank 0 held already (its own store, torch, MPI).

The same script measures the earlier code, which gathered every state on rank 0 first
(``ClientStates.gather``): run it with ``PYTHONPATH`` pointing at such a version; the
``mode`` field says which path ran (``gather`` or ``stream``).

    .venv/bin/mpiexec -n 3 .venv/bin/python benchmarks/checkpoint_memory.py --clients 1000
    .venv/bin/python benchmarks/checkpoint_memory.py --quick      # smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_NUM_THREADS", "1")

import h5py  # noqa: E402
import numpy as np  # noqa: E402

from hpc_fedprune.client_state.homes import ClientStates  # noqa: E402
from hpc_fedprune.client_state.store import ClientStateStore  # noqa: E402
from hpc_fedprune.comm.world import World  # noqa: E402
from hpc_fedprune.store.checkpoint import Checkpoint  # noqa: E402
from hpc_fedprune.store.rundir import RunDir  # noqa: E402

MB = 2**20


def status_mb(field: str) -> float:
    """A ``/proc/self/status`` memory figure (``VmRSS``, ``VmHWM``) in MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return float("nan")


def reset_peak() -> bool:
    """Reset this process's peak resident memory (VmHWM) to its current size."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--length", type=int, default=50_000, help="entries per state array")
    parser.add_argument("--budget-mb", type=float, default=64.0, help="client_state.budget_mb")
    parser.add_argument("--quick", action="store_true", help="100 clients of 5,000 entries")
    args = parser.parse_args()
    if args.quick:
        args.clients, args.length = 100, 5_000
    world = World.from_mpi()
    arrays = {"residual": (np.float32, args.length), "momentum": (np.float32, args.length)}
    spill = tempfile.mkdtemp(prefix="checkpoint-memory-")
    store = ClientStateStore(arrays, int(args.budget_mb * MB), spill)
    states = ClientStates(world, store)
    for client in range(world.rank, args.clients, world.size):
        rng = np.random.default_rng(client)
        store.put(client, {n: rng.standard_normal(args.length, np.float32) for n in arrays})
    out = Path(tempfile.mkdtemp(prefix="checkpoint-memory-run-")) if world.is_root else None
    if world.is_root:
        with h5py.File(out / "run.h5", "w") as f:
            f.attrs["status"] = "running"
            f.create_dataset("metrics/round", data=np.arange(1, 11), maxshape=(None,))
    weights = np.zeros(args.length, np.float32)
    world.barrier()
    before = status_mb("VmRSS")
    reset = reset_peak()
    t = time.perf_counter()
    if hasattr(states, "to_root"):
        mode = "stream"
        with states.to_root() as chunks:
            if world.is_root:
                RunDir(out).write_checkpoint(Checkpoint(10, weights, None, {}, chunks))
    else:
        mode = "gather"
        clients = states.gather()
        if world.is_root:
            RunDir(out).write_checkpoint(Checkpoint(10, weights, None, {}, clients))
    seconds = time.perf_counter() - t
    peak = status_mb("VmHWM")
    if world.is_root:
        state_mb = args.clients * 2 * args.length * 4 / MB
        print(
            json.dumps(
                {
                    "benchmark": "checkpoint_memory",
                    "mode": mode,
                    "ranks": world.size,
                    "clients": args.clients,
                    "state_mb_per_client": round(2 * args.length * 4 / MB, 3),
                    "state_mb_total": round(state_mb, 1),
                    "budget_mb": args.budget_mb,
                    "rank0_rss_before_mb": round(before, 1),
                    "rank0_peak_mb": round(peak, 1),
                    "checkpoint_peak_mb": round(peak - before, 1) if reset else None,
                    "checkpoint_s": round(seconds, 2),
                    "checkpoint_file_mb": round((out / "checkpoint.h5").stat().st_size / MB, 1),
                }
            ),
            flush=True,
        )
        shutil.rmtree(out, ignore_errors=True)
    states.close()
    shutil.rmtree(spill, ignore_errors=True)


if __name__ == "__main__":
    main()
