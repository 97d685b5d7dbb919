"""Every sparse collective against a numpy reference, in ONE launch per rank count.

Run under mpiexec by tests/mpi/test_collectives.py:
    mpiexec -n 3 python -m mpi4py tests/mpi/collectives_check.py
Each rank builds every rank's contribution from the same seeds, so each knows the exact
reference sum. Prints ``CHECKS_OK <count>`` on rank 0 when all checks pass; any failure
raises, and ``-m mpi4py`` turns that into an abort of the whole job (never a hang).
"""

from __future__ import annotations

import hashlib
import sys

import numpy as np
from mpi4py import MPI

from hpc_fedprune.comm import collectives, encodings, sparse
from hpc_fedprune.comm.wire import round_values

COMM = MPI.COMM_WORLD
RANK, SIZE = COMM.Get_rank(), COMM.Get_size()
REDUCE_METHODS = ("dense", "op", "gatherv", "split", "union", "auto")
checks = 0


def digest(arr) -> str:
    if arr is None:
        return "none"
    if isinstance(arr, tuple):
        return digest(arr[0]) + digest(arr[1])
    return hashlib.sha1(np.ascontiguousarray(arr).tobytes()).hexdigest()


def contributions(seed: int, n: int, density: float, *, support=None, empty=(), magnitude=None):
    """Dense int64 contribution of every rank (same on all ranks: seeded by case and rank)."""
    out = []
    for r in range(SIZE):
        rng = np.random.default_rng([seed, r])
        vec = np.zeros(n, dtype=np.int64)
        if r not in empty:
            if support is None:
                idx = np.flatnonzero(rng.random(n) < density)
            else:
                idx = support[rng.random(support.size) < density]
            if magnitude is None:
                vals = rng.integers(-(2**40), 2**40, size=idx.size)
            else:
                vals = rng.choice([-magnitude, magnitude, -1, 1], size=idx.size)
            vec[idx] = vals
        out.append(vec)
    return out


def check_reduce(name: str, parts: list[np.ndarray], shared=None) -> None:
    """All methods x input form x output form x root/all against sum(parts)."""
    global checks
    n = parts[0].size
    expected = np.sum(np.stack(parts), axis=0)  # int64: exact
    exp_idx = np.flatnonzero(expected)
    mine_dense = parts[RANK]
    mine_sparse = (np.flatnonzero(mine_dense), mine_dense[np.flatnonzero(mine_dense)])
    methods = REDUCE_METHODS + (("shared",) if shared is not None else ())
    for method in methods:
        for form, acc in (("dense", mine_dense), ("sparse", mine_sparse)):
            for out in ("dense", "sparse"):
                for to_all in (False, True):
                    root = SIZE - 1 if not to_all else 0  # a non-zero root too
                    # A reused output buffer with stale content (sparse input only).
                    reuse = None
                    if out == "dense" and form == "sparse":
                        reuse = np.full(n, 7, dtype=np.int64)
                    result, stats = collectives.reduce_sum(
                        COMM,
                        acc,
                        n=n,
                        method=method,
                        root=root,
                        to_all=to_all,
                        shared_support=shared,
                        out=out,
                        dense_out=reuse,
                    )
                    where = f"{name}/{method}/{form}->{out}/to_all={to_all} rank {RANK}"
                    receives = to_all or RANK == root
                    if not receives:
                        assert result is None, where
                    elif out == "dense":
                        assert result.dtype == np.int64 and np.array_equal(result, expected), where
                        assert reuse is None or result is reuse, where
                    else:
                        assert np.array_equal(result.indices, exp_idx), where
                        assert np.array_equal(result.values, expected[exp_idx]), where
                    assert stats.mpi_bytes >= 0 and (SIZE == 1) == (stats.mpi_bytes == 0), where
                    if stats.method == "op":
                        seen = set(stats.op_buffer_bytes)
                        assert seen <= {stats.packed_bytes}, f"{where}: op saw {seen}"
                    if to_all:
                        hashes = COMM.allgather(digest(result))
                        assert len(set(hashes)) == 1, f"{where}: ranks disagree"
                    checks += 1


def check_op_whole_buffer() -> None:
    """A > 20 MB packed buffer reaches the user op whole on every rank that runs it."""
    global checks
    n = 1_400_000  # full density: capacity = n, packed = 8 * (3 + 2n) bytes = 22.4 MB
    acc = np.full(n, RANK + 1, dtype=np.int64)
    result, stats = collectives.reduce_sum(COMM, acc, method="op", to_all=True)
    assert np.all(result == SIZE * (SIZE + 1) // 2)
    calls = COMM.allgather(len(stats.op_buffer_bytes))
    if SIZE > 1:
        assert stats.packed_bytes > 20_000_000
        assert set(stats.op_buffer_bytes) <= {stats.packed_bytes}, stats.op_buffer_bytes
        assert sum(calls) > 0, "the user op never ran"
    checks += 1


def check_auto_choices() -> None:
    """auto agrees on one method on every rank and follows the documented crossovers."""
    global checks
    n = 200_000

    def run(parts, expected_method, *, io, shared=None):
        global checks
        dense_in = parts[RANK]
        if io == "mixed":  # rank 0 dense, the others sparse: every rank must still agree
            use_dense = RANK == 0
        else:
            use_dense = io == "dense"
        idx = np.flatnonzero(dense_in)
        acc = dense_in if use_dense else (idx, dense_in[idx])
        out = "dense" if io == "dense" else "sparse"
        result, stats = collectives.reduce_sum(
            COMM, acc, n=n, to_all=True, shared_support=shared, out=out
        )
        want = np.sum(np.stack(parts), axis=0)
        got = result if out == "dense" else sparse.to_dense(result, n)
        assert np.array_equal(got, want)
        methods = COMM.allgather(stats.method)
        assert len(set(methods)) == 1, methods
        assert SIZE == 1 or stats.method == expected_method, (io, stats.method, expected_method)
        checks += 1

    # At this small n the default GATHERV_MAX_ENTRIES would always pick gatherv: lower it
    # (identically on every rank) so that the split branch is exercised too.
    saved = collectives.GATHERV_MAX_ENTRIES
    collectives.GATHERV_MAX_ENTRIES = 1000
    for io, cases in (
        ("sparse", ((0.001, "gatherv"), (0.05, "split"), (0.5, "dense"))),
        ("dense", ((0.001, "gatherv"), (0.012, "split"), (0.1, "dense"))),
        ("mixed", ((0.1, "dense"),)),
    ):
        for density, expected_method in cases:
            run(contributions(99, n, density / SIZE), expected_method, io=io)
    collectives.GATHERV_MAX_ENTRIES = saved
    for io, cases in (
        ("sparse", ((0.1, "shared"), (0.4, "shared"), (0.9, "dense"))),
        ("dense", ((0.1, "shared"), (0.4, "dense"))),
        ("mixed", ((0.4, "shared"),)),  # shared: decided from n, K and out alone
    ):
        for share, expected_method in cases:
            support = np.arange(0, int(share * n))
            run(contributions(98, n, 0.5, support=support), expected_method, io=io, shared=support)


def check_density_hint() -> None:
    """With a density hint, auto skips its counting round: dense moves exactly 8n each way."""
    global checks
    n = 200_000
    parts = contributions(97, n, 0.3)
    want = np.sum(np.stack(parts), axis=0)
    result, stats = collectives.reduce_sum(COMM, parts[RANK], to_all=True, density_hint=0.9)
    assert np.array_equal(result, want)
    if SIZE > 1:
        assert stats.method == "dense" and stats.bytes_sent == stats.bytes_recv == 8 * n, stats
    idx = np.flatnonzero(parts[RANK])
    result, stats = collectives.reduce_sum(
        COMM, (idx, parts[RANK][idx]), n=n, to_all=True, density_hint=0.001, out="sparse"
    )
    assert np.array_equal(sparse.to_dense(result, n), want)  # a wrong hint costs time only
    assert SIZE == 1 or stats.method == "gatherv", stats
    checks += 2


def check_bad_input() -> None:
    """Values outside the shared support are refused on every rank (all ranks raise)."""
    global checks
    n = 1000
    support = np.arange(0, n, 2)
    acc = np.zeros(n, dtype=np.int64)
    acc[1] = 5
    try:
        collectives.reduce_sum(COMM, acc, method="shared", shared_support=support)
    except ValueError:
        checks += 1
    else:
        raise AssertionError("non-zero outside the shared support was accepted")


def check_broadcast() -> None:
    """Model + mask broadcast: full mask, mask change, no mask, narrow wire types."""
    global checks
    n = 50_000
    rng = np.random.default_rng(7)
    masks = [rng.random(n) < 0.3 for _ in range(2)]
    masks[1] = masks[0].copy()
    masks[1][rng.choice(n, 500, replace=False)] ^= True
    weights = [(rng.standard_normal(n) * m).astype(np.float32) for m in masks]
    prev = None
    for step, (w, m) in enumerate(zip(weights, masks, strict=True)):
        for value_dtype in ("float32", "bfloat16"):
            root_w = w if RANK == 0 else None
            root_m = m if RANK == 0 else None
            got_w, got_m, stats = collectives.broadcast_model(
                COMM, root_w, root_m, prev_mask=prev, value_dtype=value_dtype
            )
            want = round_values(w, value_dtype)
            assert np.array_equal(got_w.view(np.uint32), want.view(np.uint32)), step
            assert np.array_equal(got_m, m), step
            assert stats.weights_method == "values", stats
            assert stats.mask_method != "" and stats.encoded_bytes > 0
            if step == 1:
                # Only the 500 changed positions travel: far below a bitmap of n bits.
                assert stats.mask_bytes < n // 8 // 4, stats
            hashes = COMM.allgather(digest(got_w) + digest(got_m))
            assert len(set(hashes)) == 1
            checks += 1
        prev = m
    dense = rng.standard_normal(n).astype(np.float32)
    got_w, got_m, stats = collectives.broadcast_model(COMM, dense if RANK == 0 else None)
    assert got_m is None and np.array_equal(got_w, dense) and stats.weights_method == "dense"
    size_one = encodings.plan(dense).total_bytes
    assert stats.encoded_bytes == size_one
    checks += 1


def main() -> int:
    n = 100_000
    rng = np.random.default_rng(3)
    shared = np.sort(rng.choice(n, n // 10, replace=False))
    shared_mask = np.zeros(n, dtype=bool)
    shared_mask[shared] = True
    big = (2**62 - 1) // SIZE
    cases = [
        ("random-1%", contributions(1, n, 0.01), None),
        ("random-8%", contributions(2, n, 0.08), None),
        ("random-40%", contributions(3, n, 0.4), None),
        ("shared-mask", contributions(4, n, 0.7, support=shared), shared_mask),
        ("shared-idx", contributions(5, n, 1.0, support=shared), shared),
        ("some-empty", contributions(6, n, 0.02, empty=range(0, SIZE, 2)), None),
        ("all-empty", contributions(7, n, 0.0), None),
        ("full", contributions(8, 3000, 1.0), None),
        ("single", contributions(9, 1, 1.0), None),
        ("one-element", contributions(10, n, 1.0 / n, empty=range(SIZE - 1)), None),
        ("extremes", contributions(11, 5000, 0.5, magnitude=big), None),
    ]
    for name, parts, shared_support in cases:
        check_reduce(name, parts, shared_support)
    check_op_whole_buffer()
    check_auto_choices()
    check_density_hint()
    check_bad_input()
    check_broadcast()
    total = COMM.allreduce(checks)
    if RANK == 0:
        print(f"CHECKS_OK {total}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
