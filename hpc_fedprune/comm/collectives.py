"""Sums of the ranks' int64 accumulators over MPI: sparse methods, dense, and a chooser.

Every rank holds the fixed-point sum of its clients' contributions (:mod:`.exact`), dense
(int64, length ``n``) or sparse (sorted int64 indices, int64 values). :func:`reduce_sum`
returns the global sum on ``root`` (or on every rank), by one of:

``dense``    plain int64 ``Allreduce``/``Reduce`` of ``n`` words.
``shared``   every rank works under the same known support (``shared_support``): the values
             at those positions, in that order, need no indices; a dense int64 reduction of
             ``K`` words.
``op``       a user-defined MPI op that merge-sums packed ``[header | indices | values]``
             buffers; capacity agreed first (``min(n, sum of nnz)``), and the buffer passed as
             ONE element of a contiguous derived datatype so no MPI library can split it.
``gatherv``  compressed ``(values, uint32 indices)`` gathered to root (``Allgatherv`` when
             every rank needs the sum), then a k-way merge.
``split``    reduce-scatter by index range (``Alltoallv``), each rank merges its 1/p of the
             index space, then the disjoint pieces are gathered (no second merge).
``union``    OR-reduce of the bit-packed supports, then a dense int64 sum over the union.
``auto``     chooses from quantities every rank knows (``n``, the gathered nnz counts, the
             shared support), so all ranks choose the same (see :func:`choose_method`).

Results are exact and identical on every rank that receives them, whatever the method.
:func:`broadcast_model` (from :mod:`.broadcast`) sends the new model and mask back out.

Byte accounting (``ReduceStats.mpi_bytes``) counts the payload this rank hands to MPI or
gets from it: Allreduce of c bytes = c sent + c received; Reduce = c sent by non-roots, c
received by root; (All)Gatherv = own block sent, the other ranks' blocks received; Bcast =
c sent by root, c received by the others. It is what an ideal algorithm must move; MPI's
internal trees and rings forward some of it more than once.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
from mpi4py import MPI

from . import sparse
from .bitpack import bitmap_to_indices, indices_to_bitmap
from .broadcast import BroadcastStats, broadcast_model
from .sparse import SparseVec

__all__ = [
    "METHODS",
    "BroadcastStats",
    "ReduceStats",
    "SparseVec",
    "broadcast_model",
    "choose_method",
    "reduce_sum",
    "support_indices",
]

METHODS = ("auto", "dense", "shared", "op", "gatherv", "split", "union")

# Crossovers measured with benchmarks/sparse_reduce.py (see benchmarks/README.md). "Dense
# I/O" means the caller wants a dense result or (when auto counts the nnz) some rank passes
# a dense accumulator: O(n) conversions to and from sparse form then eat part of a sparse
# method's lead.
# Below this many entries the extra nnz round trip of a sparse method costs more than it saves.
SMALL_N = 32_768
# Random supports (d = sum of the ranks' nnz / n, an upper bound on the union's density):
# 'dense' above SPARSE_MAX_DENSITY; below it 'gatherv' (2 collectives, but every receiver
# merges all entries) while the sum of nnz is at most GATHERV_MAX_ENTRIES, else 'split'
# (4 collectives, the merge work shared out by index range).
# With dense I/O below LARGE_N entries, the dense Allreduce is cheap (the vector stays in
# cache, no page faults) and the crossover comes earlier.
SPARSE_MAX_DENSITY = {"sparse_io": 0.15, "dense_io": 0.05, "dense_io_small_n": 0.02}
LARGE_N = 1 << 22
GATHERV_MAX_ENTRIES = 131_072
# Shared support of K positions: reducing K words beats n words up to this K / n.
SHARED_MAX_DENSITY = {"sparse_io": 0.50, "dense_io": 0.25}
# auto estimates the density of a large dense accumulator from every 61st entry (a prime, so
# that no tensor layout aliases with it): about 1/8 of the cache lines instead of all.
SAMPLE_STRIDE = 61


@dataclass(frozen=True)
class ReduceStats:
    """What one reduction did on this rank.

    Attributes
    ----------
    method : str
        The method that ran ('serial' on one rank).
    bytes_sent, bytes_recv : int
        Payload this rank handed to MPI / got from MPI (see the module docstring).
    nnz_sum : int
        Sum of the ranks' non-zero counts (an upper bound on the union); -1 where they were
        not counted exactly (the dense and shared methods need no counts).
    seconds : float
        Wall time of the call on this rank.
    packed_bytes : int
        Size of the agreed packed buffer ('op' only, else 0).
    op_buffer_bytes : tuple of int
        Size of every (inbuf, inoutbuf) the user op received on this rank, flattened
        ('op' only): each must equal ``packed_bytes``.
    """

    method: str
    bytes_sent: int = 0
    bytes_recv: int = 0
    nnz_sum: int = -1
    seconds: float = 0.0
    packed_bytes: int = 0
    op_buffer_bytes: tuple[int, ...] = field(default=())

    @property
    def mpi_bytes(self) -> int:
        """Bytes this rank sent plus received through MPI."""
        return self.bytes_sent + self.bytes_recv


class _Tally:
    """Payload bytes of one call, by the accounting rule of the module docstring."""

    def __init__(self, comm: MPI.Comm):
        self.rank = comm.Get_rank()
        self.size = comm.Get_size()
        self.sent = 0
        self.recv = 0

    def allreduce(self, nbytes: int) -> None:
        self.sent += nbytes
        self.recv += nbytes

    def reduce(self, nbytes: int, root: int) -> None:
        if self.rank == root:
            self.recv += nbytes
        else:
            self.sent += nbytes

    def gather(self, counts: Sequence[int], root: int | None) -> None:
        """Gather(v) to ``root`` of per-rank byte ``counts``; ``root=None``: to every rank."""
        mine = int(counts[self.rank])
        others = int(sum(counts)) - mine
        if root is None:
            self.sent += mine
            self.recv += others
        elif self.rank == root:
            self.recv += others
        else:
            self.sent += mine


# --------------------------------------------------------------------------- inputs


class _Input:
    """A rank's accumulator, dense or sparse, converted lazily to the form a method needs."""

    def __init__(self, acc: np.ndarray | tuple[np.ndarray, np.ndarray], n: int | None):
        if isinstance(acc, np.ndarray):
            if acc.ndim != 1 or acc.dtype != np.int64:
                raise ValueError(f"a dense accumulator must be 1-D int64, got {acc.dtype}")
            if n is not None and n != acc.size:
                raise ValueError(f"n={n} but the dense accumulator has {acc.size} entries")
            self.n = int(acc.size)
            self.is_dense = True  # the form the caller passed
            self._dense: np.ndarray | None = acc
            self._sparse: SparseVec | None = None
        else:
            if n is None:
                raise ValueError("a sparse accumulator needs n")
            self.n = int(n)
            self.is_dense = False
            self._dense = None
            self._sparse = sparse.check(acc, self.n)
        self._nnz: int | None = None

    @property
    def dense(self) -> np.ndarray:
        if self._dense is None:
            self._dense = sparse.to_dense(self._sparse, self.n)
        return self._dense

    @property
    def sparse(self) -> SparseVec:
        if self._sparse is None:
            self._sparse = sparse.from_dense(self._dense)
        return self._sparse

    def nnz_estimate(self) -> int:
        """The nnz, or for a large dense input an estimate from a strided sample.

        Counting every entry of a dense accumulator costs a full pass over 8n bytes (about
        4 ms at n = 11M, near 10% of a dense Allreduce); ``auto`` only needs the density to
        choose, and a sparse method counts exactly afterwards.
        """
        if self._nnz is not None or not self.is_dense or self.n < SAMPLE_STRIDE * 1024:
            return self.nnz
        sample = self._dense[::SAMPLE_STRIDE]
        return int(round(np.count_nonzero(sample) * self.n / sample.size))

    @property
    def nnz(self) -> int:
        """Entries to send: the non-zeros of a dense input, every entry of a sparse one."""
        if self._nnz is None:
            if self._sparse is not None:
                self._nnz = int(self._sparse.indices.size)
            else:
                self._nnz = int(np.count_nonzero(self._dense))
        return self._nnz

    def at(self, support: np.ndarray) -> np.ndarray:
        """int64 values at the positions ``support`` (sorted); non-zeros elsewhere are an error."""
        if self._dense is not None:
            vals = self._dense[support]
            if int(np.count_nonzero(vals)) != self.nnz:
                raise ValueError("the accumulator has non-zeros outside shared_support")
            return vals
        vec = self._sparse
        if vec.indices.size == support.size and np.array_equal(vec.indices, support):
            return vec.values
        out = np.zeros(support.size, dtype=np.int64)
        pos = np.searchsorted(support, vec.indices)
        inside = pos < support.size
        inside[inside] = support[pos[inside]] == vec.indices[inside]
        if not inside.all():
            raise ValueError("the accumulator has entries outside shared_support")
        out[pos] = vec.values
        return out


def support_indices(mask_or_indices: np.ndarray, n: int) -> np.ndarray:
    """Sorted int64 positions from a bool mask of length ``n`` or from an index array.

    Pass indices (computed once per mask) to keep the shared path O(K) per call.
    """
    arr = np.asarray(mask_or_indices)
    if arr.dtype == np.bool_:
        if arr.shape != (n,):
            raise ValueError(f"shared_support mask has shape {arr.shape}, expected ({n},)")
        return np.flatnonzero(arr)
    return sparse.check((arr, np.zeros(arr.size, dtype=np.int64)), n).indices


# --------------------------------------------------------------------------- choice


def choose_method(
    n: int, *, nnz_sum: int | None = None, shared_k: int | None = None, dense_io: bool = True
) -> str:
    """The method ``auto`` runs; a function of globally known quantities only.

    Parameters
    ----------
    n : int
        Vector length.
    nnz_sum : int or None
        Sum of the ranks' nnz (None before it is gathered).
    shared_k : int or None
        Size of the shared support, when there is one.
    dense_io : bool
        The result is wanted dense, or some rank passes a dense accumulator.

    Returns
    -------
    str
        'dense', 'shared', 'gatherv', 'split', or 'nnz' (gather the counts first, then
        ask again with ``nnz_sum``).
    """
    io = "sparse_io"
    if dense_io:
        io = "dense_io" if n >= LARGE_N else "dense_io_small_n"
    if n < SMALL_N:
        return "dense"
    if shared_k is not None:
        limit = SHARED_MAX_DENSITY["dense_io" if dense_io else "sparse_io"]
        return "shared" if shared_k <= limit * n else "dense"
    if nnz_sum is None:
        return "nnz"
    if nnz_sum > SPARSE_MAX_DENSITY[io] * n:
        return "dense"
    return "gatherv" if nnz_sum <= GATHERV_MAX_ENTRIES else "split"


def _gather_counts(comm: MPI.Comm, inp: _Input, tally: _Tally, *, exact: bool = True) -> np.ndarray:
    """(size, 2) int64: every rank's nnz (or estimate) and whether its input is dense."""
    size = comm.Get_size()
    counts = np.empty((size, 2), dtype=np.int64)
    # The methods that need exact counts convert to sparse anyway: count once, there.
    nnz = int(inp.sparse.indices.size) if exact else inp.nnz_estimate()
    comm.Allgather(np.array([nnz, inp.is_dense], dtype=np.int64), counts)
    tally.gather([16] * size, None)
    return counts


def _auto(
    comm: MPI.Comm,
    inp: _Input,
    support: np.ndarray | None,
    out: str,
    density_hint: float | None,
    tally: _Tally,
) -> tuple[str, np.ndarray | None]:
    """The method ``auto`` picks (the same on every rank) and, if gathered, the counts."""
    if inp.n < SMALL_N:
        return "dense", None
    if support is not None:
        # Decided from n, K and out alone: no communication before the reduction itself.
        return choose_method(inp.n, shared_k=int(support.size), dense_io=out == "dense"), None
    if density_hint is not None:
        nnz_sum = int(round(density_hint * inp.n))
        return choose_method(inp.n, nnz_sum=nnz_sum, dense_io=out == "dense"), None
    counts = _gather_counts(comm, inp, tally, exact=False)
    any_dense = bool(counts[:, 1].any())
    chosen = choose_method(
        inp.n, nnz_sum=int(counts[:, 0].sum()), dense_io=out == "dense" or any_dense
    )
    # Estimated counts (dense inputs) choose a method but cannot size buffers.
    return chosen, None if any_dense else counts


# --------------------------------------------------------------------------- methods


def _reduce_words(
    comm: MPI.Comm,
    send: np.ndarray,
    root: int,
    to_all: bool,
    tally: _Tally,
    into: np.ndarray | None = None,
) -> np.ndarray | None:
    """Exact int64 SUM of equal-length vectors (Allreduce or Reduce), optionally ``into``."""
    send = np.ascontiguousarray(send, dtype=np.int64)
    receives = to_all or comm.Get_rank() == root
    out = None
    if receives:
        out = into if into is not None and into is not send else np.empty_like(send)
    if to_all:
        comm.Allreduce(send, out, op=MPI.SUM)
        tally.allreduce(send.nbytes)
    else:
        comm.Reduce(send, out, op=MPI.SUM, root=root)
        tally.reduce(send.nbytes, root)
    return out


def _dense(comm, inp: _Input, root, to_all, tally, into) -> np.ndarray | None:
    return _reduce_words(comm, inp.dense, root, to_all, tally, into)


def _shared(comm, inp: _Input, support: np.ndarray, root, to_all, tally) -> SparseVec | None:
    total = _reduce_words(comm, inp.at(support), root, to_all, tally)
    return None if total is None else SparseVec(support, total)


class _MergeOp:
    """The user op: merge-sum of two packed buffers, checking that each arrived whole."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.seen: list[int] = []
        self.errors: list[str] = []

    def __call__(self, inbuf, inoutbuf, datatype) -> None:
        a = np.frombuffer(inbuf, dtype=np.int64)
        b = np.frombuffer(inoutbuf, dtype=np.int64)
        self.seen.extend((a.nbytes, b.nbytes))
        if not (sparse.packed_ok(a, self.capacity) and sparse.packed_ok(b, self.capacity)):
            # Never raise inside MPI: record, and the caller raises after the collective.
            self.errors.append(f"user op got {a.nbytes}/{b.nbytes}-byte pieces of a buffer")
            return
        try:
            sparse.merge_packed_into(a, b)
        except Exception as exc:  # noqa: BLE001 - reported after the collective
            self.errors.append(repr(exc))


def _op(comm, inp: _Input, nnz_sum: int, root, to_all, tally) -> tuple[SparseVec | None, _MergeOp]:
    capacity = min(inp.n, nnz_sum)
    merge = _MergeOp(capacity)
    packed = sparse.pack(inp.sparse, capacity)
    op = MPI.Op.Create(merge, commute=True)
    whole = MPI.BYTE.Create_contiguous(packed.nbytes).Commit()
    try:
        out = np.empty_like(packed) if (to_all or comm.Get_rank() == root) else None
        if to_all:
            comm.Allreduce([packed, 1, whole], [out, 1, whole], op=op)
            tally.allreduce(packed.nbytes)
        else:
            recv = [out, 1, whole] if out is not None else None
            comm.Reduce([packed, 1, whole], recv, op=op, root=root)
            tally.reduce(packed.nbytes, root)
    finally:
        whole.Free()
        op.Free()
    if merge.errors:
        raise RuntimeError("sparse reduction op failed: " + "; ".join(merge.errors[:3]))
    if out is None:
        return None, merge
    if not sparse.packed_ok(out, capacity):
        raise RuntimeError("sparse reduction returned a malformed packed buffer")
    total = sparse.unpack(out)
    return SparseVec(total.indices.copy(), total.values.copy()), merge


def _block_bytes(m: int) -> int:
    """A block of m entries: int64 values, uint32 indices, padded to a multiple of 8 bytes."""
    return 8 * m + 8 * ((m + 1) // 2)


def _blocks(vecs: Sequence[SparseVec]) -> np.ndarray:
    """Concatenated blocks ``[values | uint32 indices | pad]``, one per vector."""
    out = np.zeros(sum(_block_bytes(v.indices.size) for v in vecs), dtype=np.uint8)
    at = 0
    for vec in vecs:
        m = int(vec.indices.size)
        out[at : at + 8 * m] = vec.values.view(np.uint8)
        out[at + 8 * m : at + 12 * m] = vec.indices.astype("<u4").view(np.uint8)
        at += _block_bytes(m)
    return out


def _unblocks(buf: np.ndarray, counts: Sequence[int], offset: int = 0) -> list[SparseVec]:
    """Inverse of :func:`_blocks` for blocks of ``counts`` entries (values are views)."""
    parts = []
    at = 0
    for c in counts:
        c = int(c)
        vals = buf[at : at + 8 * c].view(np.int64)
        idx = buf[at + 8 * c : at + 12 * c].view("<u4").astype(np.int64)
        parts.append(SparseVec(idx + offset if offset else idx, vals))
        at += _block_bytes(c)
    return parts


def _displacements(sizes: np.ndarray) -> np.ndarray:
    return np.concatenate([[0], np.cumsum(sizes)[:-1]]).astype(np.int64)


def _gather_blocks(
    comm, block: np.ndarray, counts: Sequence[int], root, to_all, tally
) -> np.ndarray | None:
    """(All)Gatherv of every rank's block; ``counts`` = entries per rank, known everywhere."""
    sizes = np.array([_block_bytes(int(c)) for c in counts], dtype=np.int64)
    displs = _displacements(sizes)
    if to_all:
        # Not Allgatherv: MPICH 5's Allgatherv took 0.2-1 s for 1-5 MB blocks on 3-4 ranks
        # where Allgather of the same bytes took 5-25 ms (measured, see benchmarks/README).
        # Every block is padded to the largest one and the padding squeezed out afterwards.
        width = int(sizes.max())
        padded = np.zeros(width, dtype=np.uint8)
        padded[: block.size] = block
        table = np.empty(width * sizes.size, dtype=np.uint8)
        comm.Allgather([padded, MPI.BYTE], [table, MPI.BYTE])
        tally.gather([width] * sizes.size, None)
        table = table.reshape(sizes.size, width)
        return np.concatenate([table[q, : sizes[q]] for q in range(sizes.size)])
    is_root = comm.Get_rank() == root
    recv = np.empty(int(sizes.sum()), dtype=np.uint8) if is_root else None
    spec = [recv, sizes, displs, MPI.BYTE] if is_root else None
    comm.Gatherv([block, MPI.BYTE], spec, root=root)
    tally.gather(sizes.tolist(), root)
    return recv


def _gatherv(comm, inp: _Input, counts: np.ndarray, root, to_all, tally) -> SparseVec | None:
    recv = _gather_blocks(comm, _blocks([inp.sparse]), counts, root, to_all, tally)
    if recv is None:
        return None
    return sparse.merge_sum(_unblocks(recv, counts))


def _split(comm, inp: _Input, root, to_all, tally) -> SparseVec | None:
    """Reduce-scatter by index range (Alltoallv), merge 1/p each, then gather the pieces.

    Every rank merges only its own range, so the merge work is shared instead of repeated
    on every rank (Allgatherv) or serialised on root (Gatherv). Ranges are disjoint and in
    rank order: the gathered pieces need no second merge, only concatenation.
    """
    size, rank = comm.Get_size(), comm.Get_rank()
    vec = inp.sparse
    edges = [q * inp.n // size for q in range(size + 1)]
    cuts = np.searchsorted(vec.indices, edges)
    pieces = [
        SparseVec(vec.indices[a:b] - edges[q], vec.values[a:b])
        for q, (a, b) in enumerate(zip(cuts[:-1], cuts[1:], strict=True))
    ]
    send_counts = np.array([p.indices.size for p in pieces], dtype=np.int64)
    recv_counts = np.empty(size, dtype=np.int64)
    comm.Alltoall(send_counts, recv_counts)
    tally.sent += 8 * (size - 1)
    tally.recv += 8 * (size - 1)
    send = _blocks(pieces)
    send_sizes = np.array([_block_bytes(int(c)) for c in send_counts], dtype=np.int64)
    recv_sizes = np.array([_block_bytes(int(c)) for c in recv_counts], dtype=np.int64)
    recv = np.empty(int(recv_sizes.sum()), dtype=np.uint8)
    comm.Alltoallv(
        [send, send_sizes, _displacements(send_sizes), MPI.BYTE],
        [recv, recv_sizes, _displacements(recv_sizes), MPI.BYTE],
    )
    tally.sent += int(send_sizes.sum() - send_sizes[rank])
    tally.recv += int(recv_sizes.sum() - recv_sizes[rank])
    # Offsets stay relative to this rank's range: they fit uint32 in the blocks below.
    mine = sparse.nonzero_only(sparse.merge_sum(_unblocks(recv, recv_counts)))
    counts = np.empty(size, dtype=np.int64)
    comm.Allgather(np.array([mine.indices.size], dtype=np.int64), counts)
    tally.gather([8] * size, None)
    got = _gather_blocks(comm, _blocks([mine]), counts, root, to_all, tally)
    if got is None:
        return None
    parts = [
        SparseVec(p.indices + edges[q], p.values) for q, p in enumerate(_unblocks(got, counts))
    ]
    return SparseVec(
        np.concatenate([p.indices for p in parts]), np.concatenate([p.values for p in parts])
    )


def _union(comm, inp: _Input, root, to_all, tally) -> SparseVec | None:
    vec = inp.sparse
    bitmap = indices_to_bitmap(vec.indices, inp.n)
    union_bits = np.empty_like(bitmap)
    comm.Allreduce(bitmap, union_bits, op=MPI.BOR)
    tally.allreduce(bitmap.nbytes)
    union = bitmap_to_indices(union_bits, inp.n)
    values = np.zeros(union.size, dtype=np.int64)
    values[np.searchsorted(union, vec.indices)] = vec.values
    total = _reduce_words(comm, values, root, to_all, tally)
    return None if total is None else SparseVec(union, total)


# --------------------------------------------------------------------------- entry point


def reduce_sum(
    comm: MPI.Comm,
    acc: np.ndarray | tuple[np.ndarray, np.ndarray],
    *,
    n: int | None = None,
    method: str = "auto",
    root: int = 0,
    to_all: bool = False,
    shared_support: np.ndarray | None = None,
    out: str = "dense",
    dense_out: np.ndarray | None = None,
    density_hint: float | None = None,
) -> tuple[np.ndarray | SparseVec | None, ReduceStats]:
    """Exact global sum of every rank's int64 accumulator.

    Collective: every rank calls it with the same ``n``, ``method``, ``root``, ``to_all``,
    ``out`` and (if any) the same ``shared_support``.

    Parameters
    ----------
    comm : mpi4py.MPI.Comm
        The communicator (explicit, never a global).
    acc : numpy.ndarray or (indices, values)
        Dense int64 vector of length ``n``, or sorted unique int64 indices with int64 values.
    n : int, optional
        Vector length; required for a sparse ``acc``.
    method : str
        One of :data:`METHODS`.
    root : int
        Rank that receives the sum when ``to_all`` is False.
    to_all : bool
        Every rank receives the sum.
    shared_support : numpy.ndarray, optional
        The support every rank works under (bool mask of length ``n`` or sorted indices;
        indices keep the call O(K)); enables 'shared'. Where 'shared' runs (and on one
        rank), a non-zero outside it raises ValueError.
    out : {'dense', 'sparse'}
        Dense int64 vector, or a :class:`SparseVec` of the non-zero sums only.
    dense_out : numpy.ndarray, optional
        int64 buffer of length ``n`` that receives a dense result on the ranks that get one
        (overwritten, and returned as the result).
        Reusing one across rounds saves the page faults of a fresh ``8n``-byte allocation,
        which dominate a sparse method's time at large ``n`` (tens of ms at n = 11M).
    density_hint : float, optional
        The expected sum of the ranks' nnz divided by ``n``, the same on every rank: from the
        previous round's ``stats.nnz_sum / n``, or from the algorithm (``c`` clients per rank
        uploading random supports of density ``d``: about ``size * (1 - (1 - d) ** c)``).
        ``auto`` then chooses without its counting round (a 16-byte Allgather, which costs
        one or more scheduler time slices when ranks share cores); a wrong hint costs time,
        never correctness, and a sparse method still counts exactly.

    Returns
    -------
    (numpy.ndarray or SparseVec or None, ReduceStats)
        The sum (None on ranks that receive none) and what the call cost on this rank.
    """
    start = time.perf_counter()
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    if out not in ("dense", "sparse"):
        raise ValueError(f"out must be 'dense' or 'sparse', got {out!r}")
    inp = _Input(acc, n)
    if dense_out is not None:
        _check_out(dense_out, inp.n)
    support = None if shared_support is None else support_indices(shared_support, inp.n)
    size, rank = comm.Get_size(), comm.Get_rank()
    tally = _Tally(comm)

    if size == 1:
        # Serial fast path: the sum is the input; no MPI call at all.
        if support is not None:
            inp.at(support)  # same validation as the parallel path
        result: np.ndarray | SparseVec | None = inp.dense if out == "dense" else inp.sparse
        if out == "dense":
            if dense_out is not None:
                np.copyto(_check_out(dense_out, inp.n), result)
                result = dense_out
            elif result is acc:
                result = result.copy()
        else:
            result = sparse.nonzero_only(SparseVec(result.indices.copy(), result.values.copy()))
        return result, _stats("serial", tally, -1, start)

    chosen, counts = method, None
    if method == "auto":
        chosen, counts = _auto(comm, inp, support, out, density_hint, tally)
    if counts is None and chosen in ("op", "gatherv"):
        counts = _gather_counts(comm, inp, tally)
    nnz_sum = -1 if counts is None else int(counts[:, 0].sum())
    if counts is not None:
        counts = counts[:, 0]

    receives = to_all or rank == root
    merge = None
    if chosen == "shared":
        if support is None:
            raise ValueError("method 'shared' needs shared_support")
        total = _shared(comm, inp, support, root, to_all, tally)
    elif chosen == "dense":
        total = _dense(comm, inp, root, to_all, tally, dense_out if out == "dense" else None)
    elif chosen == "op":
        total = None
        if nnz_sum > 0:
            total, merge = _op(comm, inp, nnz_sum, root, to_all, tally)
        elif receives:
            total = sparse.empty()
    elif chosen == "gatherv":
        total = _gatherv(comm, inp, counts, root, to_all, tally)
    elif chosen == "split":
        total = _split(comm, inp, root, to_all, tally)
    else:  # union
        total = _union(comm, inp, root, to_all, tally)

    result = None
    if receives:
        if out == "dense":
            result = _densify(total, inp.n, dense_out)
        else:
            vec = sparse.from_dense(total) if isinstance(total, np.ndarray) else total
            result = sparse.nonzero_only(vec)
    extra = {}
    if merge is not None:
        extra = {
            "packed_bytes": 8 * sparse.packed_words(merge.capacity),
            "op_buffer_bytes": tuple(merge.seen),
        }
    return result, _stats(chosen, tally, nnz_sum, start, **extra)


def _check_out(buf: np.ndarray, n: int) -> np.ndarray:
    if not isinstance(buf, np.ndarray) or buf.dtype != np.int64 or buf.shape != (n,):
        raise ValueError(f"dense_out must be an int64 array of shape ({n},)")
    if not buf.flags.c_contiguous or not buf.flags.writeable:
        raise ValueError("dense_out must be C-contiguous and writeable")
    return buf


def _densify(total: np.ndarray | SparseVec, n: int, into: np.ndarray | None) -> np.ndarray:
    """The dense int64 result, written into ``into`` when given."""
    if into is None:
        return total if isinstance(total, np.ndarray) else sparse.to_dense(total, n)
    if total is into:
        return into
    if isinstance(total, np.ndarray):
        np.copyto(into, total)
    else:
        into.fill(0)
        into[total.indices] = total.values
    return into


def _stats(method, tally, nnz_sum, start, **extra) -> ReduceStats:
    return ReduceStats(
        method=method,
        bytes_sent=tally.sent,
        bytes_recv=tally.recv,
        nnz_sum=nnz_sum,
        seconds=time.perf_counter() - start,
        **extra,
    )
