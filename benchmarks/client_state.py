"""Client-state store under load: Top-k residuals of many clients, memory and time per round.

Drives the run's client-state path directly (`hpc_fedprune.client_state.homes.ClientStates`
with its home ranks, all-to-all exchange and per-rank `ClientStateStore`) with synthetic
updates instead of local training: each round samples a cohort (`sample_cohort`), each rank
fetches its clients' residuals from their home ranks, every client makes a random float32
update of the model's size (keyed by seed, round and client), runs the Top-k step
(`pruning.topk.topk_step`, error feedback at ``--density``) and the new residuals go home.
No model is trained, so the figures are the state path's own cost.

Prints one JSON line (rank 0): peak resident memory per rank (``VmHWM``), the state held
in memory and spilled, and per-round seconds (median over the rounds after the first;
slowest rank), split into ``fetch`` (states from home ranks), ``load`` (out of the store,
from the spill file when spilled), ``compute`` (synthetic update and Top-k step), ``keep``
(into the store, spilling the oldest states beyond the budget) and ``send`` (guests'
states home).

    .venv/bin/python benchmarks/client_state.py --model lenet5 --clients 10000 --rounds 150
    .venv/bin/mpiexec -n 2 .venv/bin/python benchmarks/client_state.py --model lenet5
    .venv/bin/python benchmarks/client_state.py --model resnet18 --rounds 3 --budget-mb 2048
    .venv/bin/python benchmarks/client_state.py --quick      # smoke run, seconds
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np  # noqa: E402
import torch  # noqa: E402

from hpc_fedprune.client_state.homes import ClientStates  # noqa: E402
from hpc_fedprune.comm.world import World  # noqa: E402
from hpc_fedprune.pruning.topk import keep_count, topk_step  # noqa: E402
from hpc_fedprune.rng import Stream, torch_generator  # noqa: E402
from hpc_fedprune.sim.cohort import sample_cohort, schedule_cohort  # noqa: E402

# Flat sizes of the project's lenet5 (28x28x1) and resnet18_cifar (with BatchNorm buffers).
NUMEL = {"lenet5": 61_706, "resnet18": 11_183_562}
KEYS = (
    "bench", "model", "numel", "ranks", "clients", "cohort", "rounds", "density", "budget_mb",
    "state_mb_per_client", "clients_with_state", "spilled", "memory_state_mb", "spill_file_mb",
    "round_s_median", "round_s_max", "fetch_s_median", "load_s_median", "compute_s_median",
    "keep_s_median", "send_s_median",
    "baseline_rss_mb", "peak_rss_mb_per_rank",
)  # fmt: skip


class Residuals:
    """The algorithm side: Top-k with error feedback on a synthetic update."""

    def __init__(self, numel: int, density: float, seed: int) -> None:
        self.client_state_arrays = {"residual": (np.float32, numel)}
        self.numel, self.k, self.seed = numel, keep_count(numel, density), seed
        self.residual: torch.Tensor | None = None
        self.round = 0

    def load(self, state) -> None:
        self.residual = None if state is None else torch.from_numpy(state["residual"])

    def train(self, client: int) -> None:
        gen = torch_generator(self.seed, Stream.CLIENT, self.round, client)
        update = torch.randn(self.numel, generator=gen).mul_(1e-3)
        residual = torch.zeros_like(update) if self.residual is None else self.residual
        _, _, self.residual, _ = topk_step(update, residual, None, self.k)

    def kept(self) -> dict:
        return {"residual": self.residual.numpy()}


def peak_rss_mb() -> float:
    """Peak resident set of this process (VmHWM; ru_maxrss where /proc is missing), MiB."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def folder_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


def run(args, world: World) -> dict | None:
    numel = args.numel or NUMEL[args.model]
    algo = Residuals(numel, args.density, args.seed)
    spill = Path(tempfile.mkdtemp(prefix="bench-state-", dir=args.spill_dir))
    config = SimpleNamespace(
        client_state=SimpleNamespace(budget_mb=args.budget_mb, spill_dir=str(spill))
    )
    states = ClientStates.for_run(config, world, algo)
    sizes = np.ones(args.clients, dtype=np.int64)
    baseline = peak_rss_mb()
    times = {k: [] for k in ("round", "fetch", "load", "compute", "keep", "send")}
    try:
        for rnd in range(1, args.rounds + 1):
            world.barrier()
            t0 = time.perf_counter()
            cohort = sample_cohort(args.seed, rnd, args.clients, args.cohort)
            mine = schedule_cohort(cohort, sizes, world.size)[world.rank]
            states.fetch(mine)
            t1 = time.perf_counter()
            algo.round = rnd
            clock = np.zeros(3)  # load, compute, keep: summed over this rank's clients
            for client in mine.tolist():
                ta = time.perf_counter()
                algo.load(states.take(client))
                tb = time.perf_counter()
                algo.train(client)
                tc = time.perf_counter()
                states.keep(client, algo.kept())
                clock += (tb - ta, tc - tb, time.perf_counter() - tc)
            t2 = time.perf_counter()
            states.send_back()
            world.barrier()
            t3 = time.perf_counter()
            spans = (t3 - t0, t1 - t0, *clock, t3 - t2)
            for key, value in zip(times, spans, strict=True):
                value = world.comm.allreduce(value, op=_max()) if world.size > 1 else value
                times[key].append(value)
        store = states.store
        local = {
            "held": len(store),
            "spilled": store.spilled,
            "memory_mb": store.memory_bytes / 2**20,
            "spill_mb": folder_mb(spill),
            "peak": peak_rss_mb(),
            "baseline": baseline,
        }
    finally:
        states.close()
        shutil.rmtree(spill, ignore_errors=True)
    parts = world.gather_objects(local)
    if not world.is_root:
        return None
    timed = slice(1, None) if args.rounds > 1 else slice(None)  # round 1 warms up
    return {
        "bench": "client_state",
        "model": args.model if not args.numel else f"flat{numel}",
        "numel": numel,
        "ranks": world.size,
        "clients": args.clients,
        "cohort": args.cohort,
        "rounds": args.rounds,
        "density": args.density,
        "budget_mb": args.budget_mb,
        "state_mb_per_client": numel * 4 / 2**20,
        "clients_with_state": sum(p["held"] for p in parts),
        "spilled": sum(p["spilled"] for p in parts),
        "memory_state_mb": round(sum(p["memory_mb"] for p in parts), 1),
        "spill_file_mb": round(sum(p["spill_mb"] for p in parts), 1),
        **{
            f"{k}_s_median": round(float(np.median(v[timed])), 4)
            for k, v in times.items()
            if k != "round"
        },
        "round_s_median": round(float(np.median(times["round"][timed])), 4),
        "round_s_max": round(float(np.max(times["round"][timed])), 4),
        "baseline_rss_mb": round(max(p["baseline"] for p in parts), 1),
        "peak_rss_mb_per_rank": [round(p["peak"], 1) for p in parts],
    }


def _max():
    from mpi4py import MPI

    return MPI.MAX


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", choices=sorted(NUMEL), default="lenet5")
    parser.add_argument("--numel", type=int, default=0, help="flat size (overrides --model)")
    parser.add_argument("--clients", type=int, default=10_000)
    parser.add_argument("--cohort", type=int, default=100)
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--density", type=float, default=0.01)
    parser.add_argument("--budget-mb", type=float, default=256.0, help="memory budget per rank")
    parser.add_argument("--spill-dir", default=None, help="where spill folders go ($TMPDIR)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--quick", action="store_true", help="smoke run: tiny sizes")
    args = parser.parse_args(argv)
    if args.quick:
        args.model, args.clients, args.cohort, args.rounds, args.budget_mb = (
            "lenet5", 50, 10, 3, 0.5,
        )  # fmt: skip
    torch.set_num_threads(1)
    row = run(args, World.from_mpi())
    if row is not None:
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
