"""Latency and bytes of the sparse reductions against a dense int64 Allreduce.

    .venv/bin/mpiexec -n 4 .venv/bin/python benchmarks/sparse_reduce.py --n 1000000 11000000

One JSON line per (n, support, density, method): the median over ``--reps`` timed runs
(after ``--warmup`` untimed ones) of the slowest rank, each run after a barrier and timed
with ``MPI.Wtime``; the methods take turns within each repetition, so that a change of the
machine's load hits all of them alike. ``speedup``: a bare int64 Allreduce of n words into
a reused buffer (``plain_allreduce`` lines, timed before and after) over this method;
``speedup_same_io``: the 'dense' method given the same input and output form as this one
(conversions included in both) over this method. Densities are per rank: every rank holds
``density * n`` entries (random: each rank its own support; shared: every rank the same
support, values in support order). Method ``auto_hint`` is ``auto`` given
``density_hint`` (the sum of the ranks' densities). A method other than dense and auto
whose warm-up call takes longer than ``--slow-s`` is reported from that one call
(``reps: 1``). No timed assertions.
"""

from __future__ import annotations

import argparse
import json
import os
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


def time_plain_allreduce(comm, n: int, args) -> float:
    """Median time of a bare int64 ``Allreduce`` of n words into a preallocated buffer."""
    send = np.ones(n, dtype=np.int64)
    recv = np.empty_like(send)
    times = []
    for rep in range(args.warmup + 1 + args.reps):
        comm.Barrier()
        start = MPI.Wtime()
        comm.Allreduce(send, recv, op=MPI.SUM)
        elapsed = comm.allreduce(MPI.Wtime() - start, op=MPI.MAX)
        if rep > args.warmup:
            times.append(elapsed)
    return float(np.median(times))


def time_methods(comm, acc, n, methods, shared, args, hint) -> dict[str, tuple[float, dict]]:
    """Median latency (slowest rank) of each method, and the stats of its last run.

    The methods take turns within every repetition (round robin), so that a change in the
    machine's load hits all of them alike instead of whichever ran during it.
    """
    reuse = np.zeros(n, dtype=np.int64) if (args.reuse_out and args.out == "dense") else None
    times: dict[str, list[float]] = {m: [] for m in methods}
    stats = {}
    active = list(methods)
    for rep in range(args.warmup + args.reps):
        for method in list(active):
            comm.Barrier()
            start = MPI.Wtime()
            # 'auto_hint': auto told the density (sum of the ranks' nnz / n) in advance.
            _, stats[method] = collectives.reduce_sum(
                comm,
                acc,
                n=n,
                method="auto" if method == "auto_hint" else method,
                to_all=not args.root_only,
                shared_support=shared,
                out=args.out,
                dense_out=reuse,
                density_hint=hint if method == "auto_hint" else None,
            )
            elapsed = comm.allreduce(MPI.Wtime() - start, op=MPI.MAX)
            if rep >= args.warmup:
                times[method].append(elapsed)
            elif elapsed > args.slow_s and method not in ("dense", "auto", "auto_hint"):
                # Hopelessly slow here (e.g. a merge of 50% dense supports): one timing
                # is enough, and the machine is shared.
                times[method] = [elapsed]
                active.remove(method)
    out = {}
    for method in methods:
        sent = comm.allreduce(stats[method].bytes_sent)
        recv = comm.allreduce(stats[method].bytes_recv)
        out[method] = (
            float(np.median(times[method])),
            {
                "reps": len(times[method]),
                "ran": stats[method].method,
                "mpi_bytes_all_ranks": sent + recv,
                "min_s": float(np.min(times[method])),
            },
        )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, nargs="+", default=[1_000_000])
    parser.add_argument("--density", type=float, nargs="+", default=[0.001, 0.01, 0.05, 0.1, 0.5])
    parser.add_argument("--support", nargs="+", default=["shared", "random"])
    parser.add_argument(
        "--methods",
        nargs="+",
        default=["dense", "shared", "op", "gatherv", "split", "union", "auto", "auto_hint"],
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
        # Baseline: a bare int64 Allreduce into a reused buffer; timed again after the rest
        # (a line of its own) to show how much the machine's load drifted meanwhile.
        base = time_plain_allreduce(comm, n, args)
        for support in args.support:
            for density in args.density:
                acc, shared = make_input(n, density, support, args.form, rank, args.seed)
                methods = ["dense"] + [m for m in args.methods if m != "dense"]
                if shared is None:
                    methods = [m for m in methods if m != "shared"]
                timed = time_methods(comm, acc, n, methods, shared, args, density * size)
                same_io = timed["dense"][0]  # the dense method with this input and output
                for method in methods:
                    latency, info = timed[method]
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
                            "cpus": os.cpu_count(),
                            "loadavg_1min": os.getloadavg()[0],  # the machine may be shared
                            **info,
                        }
                        print(json.dumps(row), flush=True)
                del acc
        after = time_plain_allreduce(comm, n, args)
        if rank == 0:
            row = {"bench": "sparse_reduce", "ranks": size, "n": n, "method": "plain_allreduce"}
            row |= {"median_s_before": base, "median_s_after": after}
            print(json.dumps(row | {"loadavg_1min": os.getloadavg()[0]}), flush=True)


if __name__ == "__main__":
    main()
