"""Sparse int64 vectors under the collectives: merge-sum, packed buffers (no MPI)."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_fedprune.comm import sparse
from hpc_fedprune.comm.sparse import SparseVec


def random_sparse(n: int, m: int, seed: int) -> SparseVec:
    rng = np.random.default_rng(seed)
    idx = np.sort(rng.choice(n, m, replace=False)).astype(np.int64)
    return SparseVec(idx, rng.integers(-(2**40), 2**40, size=m))


@pytest.mark.parametrize("sizes", [[], [0], [5], [0, 0, 3], [10, 10], [50, 1, 0, 70, 99]])
def test_merge_sum_matches_dense_reference(sizes):
    n = 100
    parts = [random_sparse(n, m, seed) for seed, m in enumerate(sizes)]
    want = np.zeros(n, np.int64)
    for p in parts:
        want[p.indices] += p.values
    got = sparse.merge_sum(parts)
    assert np.all(np.diff(got.indices) > 0)
    np.testing.assert_array_equal(sparse.to_dense(got, n), want)
    union = np.unique(np.concatenate([p.indices for p in parts] + [np.zeros(0, np.int64)]))
    np.testing.assert_array_equal(got.indices, union)  # zero sums stay until nonzero_only


def test_identical_supports_and_cancellation():
    a = random_sparse(1000, 300, 1)
    got = sparse.merge_sum([a, SparseVec(a.indices, -a.values), a])
    np.testing.assert_array_equal(got.values, a.values)
    zero = sparse.nonzero_only(sparse.merge_sum([a, SparseVec(a.indices, -a.values)]))
    assert zero.indices.size == 0


def test_extreme_magnitudes_are_exact():
    big = 2**62 // 4
    parts = [SparseVec(np.array([0, 7]), np.array([big - 1, -big + 1])) for _ in range(4)]
    got = sparse.merge_sum(parts)
    np.testing.assert_array_equal(got.values, [4 * (big - 1), -4 * (big - 1)])


def test_pack_unpack_and_merge_in_place():
    cap = 64
    a, b = random_sparse(100, 30, 2), random_sparse(100, 40, 3)
    pa, pb = sparse.pack(a, cap), sparse.pack(b, cap)
    assert pa.nbytes == 8 * (3 + 2 * cap) and sparse.packed_ok(pa, cap)
    assert not sparse.packed_ok(pa[: pa.size // 2], cap)  # a slice is detected
    assert not sparse.packed_ok(pa, cap + 1)
    sparse.merge_packed_into(pa, pb)
    want = sparse.merge_sum([a, b])
    got = sparse.unpack(pb)
    np.testing.assert_array_equal(got.indices, want.indices)
    np.testing.assert_array_equal(got.values, want.values)
    with pytest.raises(ValueError, match="capacity"):
        sparse.pack(a, 10)


def test_check_refuses_bad_sparse_input():
    with pytest.raises(ValueError, match="increasing"):
        sparse.check((np.array([3, 1]), np.array([1, 1])), 10)
    with pytest.raises(ValueError, match="range"):
        sparse.check((np.array([10]), np.array([1])), 10)
    with pytest.raises(ValueError, match="int64"):
        sparse.check((np.array([1]), np.array([1.0])), 10)
    vec = sparse.check((np.array([1, 4], np.int32), np.array([2, 3])), 10)
    assert vec.indices.dtype == np.int64


def test_dense_round_trip():
    dense = np.zeros(50, np.int64)
    dense[[0, 17, 49]] = [5, -2, 2**61]
    vec = sparse.from_dense(dense)
    np.testing.assert_array_equal(vec.indices, [0, 17, 49])
    np.testing.assert_array_equal(sparse.to_dense(vec, 50), dense)
