"""Latency and bytes of the sparse reductions against a dense int64 Allreduce.

    .venv/bin/mpiexec -n 4 .venv/bin/python benchmarks/sparse_reduce.py --n 1000000 11000000

One JSON line per (n, support, density, method): the median over ``--reps`` timed runs
(after ``--warmup`` untimed ones) of the slowest rank, each run after a barrier and timed
with ``MPI.Wtime``. ``speedup``: a plain int64 Allreduce of an already dense vector (dense
result) over this method; ``speedup_same_io``: the 'dense' method given the same input and
output form as this one (conversions included in both) over this method. Densities are
per rank: every rank holds ``density * n`` entries (random: each rank its own support;
shared: every rank the same support, values in support order). A method whose warm-up
call takes longer than ``--slow-s`` is reported from that one call (``reps: 1``). No timed
assertions.
"""

from __future__ import annotations

import argparse
import json
import platform

import numpy as np
from mpi4py import MPI

from hpc_fedprune.comm import collectives


def make_input(n: int, density: float, support: str, form: str, rank: int, seed: int):
    """This rank's accumulator and the shared support (None for random supports)."""
    m = int(round(density * n))
    if support == "shared":
        rng = np.random.default_rng([seed, 0])  # same on every rank
        idx = np.sort(rng.choice(n, m, replace=False))
    else:
        rng = np.random.default_rng([seed, rank + 1])
        idx = np.sort(rng.choice(n, m, replace=False))
    vals = np.random.default_rng([seed, rank, 7]).integers(1, 2**40, size=m)
    shared = idx if support == "shared" else None
    if form == "dense":
        dense = np.zeros(n, dtype=np.int64)
        dense[idx] = vals
        return dense, shared
    return (idx.astype(np.int64), vals.astype(np.int64)), shared


def time_method(comm, acc, n, method, shared, args, out) -> tuple[float, dict]:
    """Median latency (slowest rank) and the stats of the last run."""
    times = []
    stats = None
    reuse = np.zeros(n, dtype=np.int64) if (args.reuse_out and out == "dense") else None
    for rep in range(args.warmup + args.reps):
        comm.Barrier()
        start = MPI.Wtime()
        _, stats = collectives.reduce_sum(
            comm,
            acc,
            n=n,
            method=method,
            to_all=not args.root_only,
            shared_support=shared,
            out=out,
            dense_out=reuse,
        )
        elapsed = comm.allreduce(MPI.Wtime() - start, op=MPI.MAX)
        if rep >= args.warmup:
            times.append(elapsed)
        elif elapsed > args.slow_s:
            # Hopelessly slow here (e.g. a merge of 50% dense supports): one timing is
            # enough, and the machine is shared.
            times = [elapsed]
            break
    sent = comm.allreduce(stats.bytes_sent)
    recv = comm.allreduce(stats.bytes_recv)
    return float(np.median(times)), {
        "reps": len(times),
        "ran": stats.method,
        "mpi_bytes_all_ranks": sent + recv,
        "mpi_bytes_rank0": stats.mpi_bytes if comm.Get_rank() == 0 else None,
        "min_s": float(np.min(times)),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--density", type=float, nargs="+", default=[0.001, 0.01, 0.05, 0.1, 0.5])
    parser.add_argument("--support", nargs="+", default=["shared", "random"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["dense", "shared", "op", "gatherv", "split", "union", "auto"],
    )
    parser.add_argument("--form", choices=["sparse", "dense"], default="sparse")
    parser.add_argument("--out", choices=["sparse", "dense"], default="sparse")
    parser.add_argument("--root-only", action="store_true", help="Reduce to rank 0")
    parser.add_argument(
        "--reuse-out", action="store_true", help="dense results into one reused buffer"
    )
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--slow-s",
        type=float,
        default=1.0,
        help="a warm-up call slower than this is reported alone",
    )
    args = parser.parse_args()

    comm = MPI.COMM_WORLD
    rank, size = comm.Get_rank(), comm.Get_size()
    for n in args.n:
        # Baseline: a plain int64 Allreduce of a vector that is already dense, dense out.
        dense_acc = np.ones(n, dtype=np.int64)
        base, _ = time_method(comm, dense_acc, n, "dense", None, args, "dense")
        for support in args.support:
            for density in args.density:
                acc, shared = make_input(n, density, support, args.form, rank, args.seed)
                same_io = None
                for method in ["dense"] + [m for m in args.methods if m != "dense"]:
                    if method == "shared" and shared is None:
                        continue
                    latency, info = time_method(comm, acc, n, method, shared, args, args.out)
                    if method == "dense":
                        same_io = latency  # the dense method with this input and output form
                    if rank == 0:
                        row = {
                            "bench": "sparse_reduce",
                            "ranks": size,
                            "n": n,
                            "support": support,
                            "density": density,
                            "method": method,
                            "form": args.form,
                            "out": args.out,
                            "to_all": not args.root_only,
                            "reuse_out": args.reuse_out,
                            "median_s": latency,
                            "dense_allreduce_s": base,
                            "speedup": base / latency,
                            "dense_same_io_s": same_io,
                            "speedup_same_io": same_io / latency,
                            "host": platform.node(),
                            **info,
                        }
                        row.pop("mpi_bytes_rank0")
                        print(json.dumps(row), flush=True)
                del acc


if __name__ == "__main__":
    main()
