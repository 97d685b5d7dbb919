"""Statistics of mask histories: how sparse, how much changed, when it settled.

Global masks (``/masks``) are compared record to record, per tensor and over all prunable
tensors together. Client-local masks (``/clients/masks``) are compared between the clients
of the same round. Everything works on the bit-packed rows as stored: counting bits of
``a & ~b`` on bytes is eight times less memory than unpacking to booleans, and the state
kept per tensor is a few packed rows, whatever the number of records.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from .runfile import ClientMaskRound, MaskRecord, MaskTensor, Run

#: Name used in place of a tensor name for statistics over all prunable tensors together.
OVERALL = "(all)"

# Bits unpacked at once when building client Gram matrices. 2**16 columns keep each partial
# product exact in float32 (sums stay far below 2**24) and the block small.
_BLOCK_BITS = 1 << 16


# --- pure functions on packed rows ---------------------------------------------------------

if hasattr(np, "bitwise_count"):  # numpy >= 2.0

    def popcount(packed: np.ndarray) -> int:
        """Number of set bits in a uint8 array."""
        return int(np.bitwise_count(packed).sum(dtype=np.int64))

else:  # pragma: no cover - numpy < 2.0
    _POPCOUNT_TABLE = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)

    def popcount(packed: np.ndarray) -> int:
        """Number of set bits in a uint8 array."""
        return int(_POPCOUNT_TABLE[packed].sum(dtype=np.int64))


def jaccard(intersection: int, union: int) -> float:
    """Jaccard similarity ``|A & B| / |A | B|``; two empty sets are identical (1.0)."""
    return 1.0 if union == 0 else intersection / union


@dataclass(frozen=True)
class PairCounts:
    """How one packed mask changed into the next (kept = bit set).

    Attributes
    ----------
    pruned : int
        Kept before, pruned now.
    regrown : int
        Pruned before, kept now.
    intersection : int
        Kept in both.
    union : int
        Kept in either.
    """

    pruned: int
    regrown: int
    intersection: int
    union: int

    @property
    def hamming(self) -> int:
        """Positions that differ: ``pruned + regrown``."""
        return self.pruned + self.regrown

    @property
    def jaccard(self) -> float:
        """Jaccard similarity of the two kept sets."""
        return jaccard(self.intersection, self.union)


def compare_packed(prev: np.ndarray, cur: np.ndarray) -> PairCounts:
    """Count the changes between two packed masks of the same tensor.

    Parameters
    ----------
    prev, cur : numpy.ndarray
        uint8 ``np.packbits`` rows of equal length. Pad bits must be zero, as packbits
        writes them; no expression here sets a pad bit in both operands.
    """
    return PairCounts(
        pruned=popcount(prev & ~cur),
        regrown=popcount(~prev & cur),
        intersection=popcount(prev & cur),
        union=popcount(prev | cur),
    )


def stable_after(
    rounds: Sequence[int], changed: Sequence[bool], rounds_done: int | None = None
) -> int | None:
    """The round after which a mask stopped changing.

    The simulator writes a mask record in round 1 and in every round where the mask may
    have changed, so a completed round without a record is a round in which the mask held
    still. The mask is therefore stable after the last record that differs from its
    predecessor, provided something shows it held after that: a later identical record, or
    later completed rounds without a record.

    Parameters
    ----------
    rounds : sequence of int
        Round of each record.
    changed : sequence of bool
        ``changed[i]``: record i differs from record i-1 (``changed[0]`` is ignored).
    rounds_done : int, optional
        Last completed round of the run; default: the last record's round.

    Returns
    -------
    int or None
        The round of the last change (of the first record if nothing changed), or None when
        the mask changed in the last completed round (or nothing shows it held).
    """
    n = len(rounds)
    if n == 0:
        return None
    last_change = max((i for i in range(1, n) if changed[i]), default=0)
    done = int(rounds[-1]) if rounds_done is None else max(int(rounds_done), int(rounds[-1]))
    held_in_file = last_change < n - 1
    held_after_file = done > int(rounds[-1])
    return int(rounds[last_change]) if held_in_file or held_after_file else None


def gram_and_histogram(packed: np.ndarray, numel: int) -> tuple[np.ndarray, np.ndarray]:
    """Pairwise intersections of client masks and how many clients keep each position.

    Parameters
    ----------
    packed : numpy.ndarray
        uint8 array ``(clients, row_bytes)``, one packed mask per client.
    numel : int
        Number of meaningful bits per row.

    Returns
    -------
    gram : numpy.ndarray
        int64 ``(clients, clients)``: ``gram[i, j]`` = positions kept by both i and j
        (the diagonal holds each client's kept count).
    kept_by : numpy.ndarray
        int64 of length ``clients + 1``: ``kept_by[k]`` = positions kept by exactly k
        clients.

    Notes
    -----
    Cost is O(clients**2 * numel) arithmetic, done by BLAS on blocks of 65,536 positions, so
    memory stays at ``clients * 65,536`` floats whatever the tensor size.
    """
    n = packed.shape[0]
    gram = np.zeros((n, n), dtype=np.int64)
    kept_by = np.zeros(n + 1, dtype=np.int64)
    block_bytes = _BLOCK_BITS // 8
    for start in range(0, packed.shape[1], block_bytes):
        stop = min(start + block_bytes, packed.shape[1])
        bits = min(numel - 8 * start, 8 * (stop - start))
        x = np.unpackbits(packed[:, start:stop], axis=1, count=bits).astype(np.float32)
        gram += np.rint(x @ x.T).astype(np.int64)
        kept_by += np.bincount(x.sum(axis=0).astype(np.int64), minlength=n + 1)
    return gram, kept_by


def pairwise_jaccard(gram: np.ndarray) -> np.ndarray:
    """Jaccard similarity of every pair of clients from their Gram matrix.

    Returns
    -------
    numpy.ndarray
        Values ``J[i, j]`` for ``i < j`` (flattened upper triangle); empty for one client.
    """
    i, j = np.triu_indices(gram.shape[0], k=1)
    inter = gram[i, j].astype(np.float64)
    union = np.diag(gram)[i] + np.diag(gram)[j] - inter
    # Two clients that keep nothing agree completely.
    return np.where(union > 0, inter / np.maximum(union, 1), 1.0)


# --- mask history ----------------------------------------------------------------------------


@dataclass(frozen=True)
class MaskRecordStats:
    """Statistics of one tensor (or of all, `OVERALL`) at one mask record.

    Attributes
    ----------
    round : int
        Round of the record.
    tensor : str
        Tensor name, or `OVERALL`.
    numel : int
        Number of weights.
    kept : int
        Weights kept (mask bit set).
    pruned, regrown, hamming : int or None
        Changes since the previous record (None at the first record).
    jaccard : float or None
        Jaccard similarity of the kept sets of this and the previous record.
    """

    round: int
    tensor: str
    numel: int
    kept: int
    pruned: int | None = None
    regrown: int | None = None
    hamming: int | None = None
    jaccard: float | None = None

    @property
    def sparsity(self) -> float:
        """Fraction of weights pruned."""
        return 1.0 - self.kept / self.numel if self.numel else 0.0

    @property
    def change_rate(self) -> float | None:
        """Fraction of weights whose mask bit changed since the previous record."""
        if self.hamming is None:
            return None
        return self.hamming / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class MaskTensorSummary:
    """The whole mask history of one tensor (or of all, `OVERALL`), in a few numbers.

    Attributes
    ----------
    tensor : str
        Tensor name, or `OVERALL`.
    numel : int
        Number of weights.
    records : int
        Number of mask records.
    first_round, last_round : int
        Rounds of the first and last record.
    final_sparsity : float
        Sparsity at the last record.
    total_pruned, total_regrown : int
        Sums over all record-to-record changes.
    stable_after_round : int or None
        See `stable_after`.
    ever_regrown : int
        Weights pruned in some record and kept in a later one.
    """

    tensor: str
    numel: int
    records: int
    first_round: int
    last_round: int
    final_sparsity: float
    total_pruned: int
    total_regrown: int
    stable_after_round: int | None
    ever_regrown: int

    @property
    def ever_regrown_fraction(self) -> float:
        """`ever_regrown` as a fraction of all weights of the tensor."""
        return self.ever_regrown / self.numel if self.numel else 0.0


@dataclass(frozen=True)
class MaskHistory:
    """Statistics of a run's global mask history.

    Attributes
    ----------
    rounds : numpy.ndarray
        Round of each record.
    tensors : tuple of str
        Tensor names in model order.
    per_tensor : list of MaskRecordStats
        One entry per record per tensor, record-major.
    overall : list of MaskRecordStats
        One entry per record, over all tensors together.
    summaries : dict of str to MaskTensorSummary
        Per tensor name, and `OVERALL` for all together.
    rounds_done : int
        Last completed round of the run (at least the last record's round); the last
        record's mask holds until then.
    """

    rounds: np.ndarray
    tensors: tuple[str, ...]
    per_tensor: list[MaskRecordStats]
    overall: list[MaskRecordStats]
    summaries: dict[str, MaskTensorSummary]
    rounds_done: int

    def sparsity_matrix(self) -> np.ndarray:
        """Sparsity as an array ``(len(tensors), len(rounds))``, for heat maps."""
        m = np.array([s.sparsity for s in self.per_tensor], dtype=np.float64)
        return m.reshape(len(self.rounds), len(self.tensors)).T


class _TensorTracker:
    """State carried from record to record for one tensor: O(numel / 8) bytes."""

    def __init__(self, tensor: MaskTensor) -> None:
        self.tensor = tensor
        self.prev: np.ndarray | None = None
        # Bits set where the weight was pruned in some record so far / later regrown.
        self.ever_pruned = np.zeros(tensor.row_bytes, dtype=np.uint8)
        self.ever_regrown = np.zeros(tensor.row_bytes, dtype=np.uint8)
        # Pad bits of the last byte must never count as pruned.
        self.valid = np.packbits(np.ones(tensor.numel, dtype=bool))
        self.changed: list[bool] = []
        self.total_pruned = 0
        self.total_regrown = 0
        self.last: MaskRecordStats | None = None

    def update(self, rnd: int, row: np.ndarray) -> MaskRecordStats:
        row = np.asarray(row, dtype=np.uint8)
        kept = popcount(row)
        self.ever_regrown |= self.ever_pruned & row
        self.ever_pruned |= ~row & self.valid
        if self.prev is None:
            stats = MaskRecordStats(rnd, self.tensor.name, self.tensor.numel, kept)
            self.changed.append(False)
        else:
            c = compare_packed(self.prev, row)
            stats = MaskRecordStats(
                rnd,
                self.tensor.name,
                self.tensor.numel,
                kept,
                pruned=c.pruned,
                regrown=c.regrown,
                hamming=c.hamming,
                jaccard=c.jaccard,
            )
            self.changed.append(c.hamming > 0)
            self.total_pruned += c.pruned
            self.total_regrown += c.regrown
        self.prev = row
        self.last = stats
        return stats


def _combine(rnd: int, parts: Sequence[MaskRecordStats], first: bool) -> MaskRecordStats:
    """Statistics over all tensors from the per-tensor ones (counts add up)."""
    numel = sum(p.numel for p in parts)
    kept = sum(p.kept for p in parts)
    if first:
        return MaskRecordStats(rnd, OVERALL, numel, kept)
    pruned = sum(p.pruned or 0 for p in parts)
    regrown = sum(p.regrown or 0 for p in parts)
    # |A & B| = |B| - regrown and |A | B| = |B| + pruned, summed over tensors.
    return MaskRecordStats(
        rnd,
        OVERALL,
        numel,
        kept,
        pruned=pruned,
        regrown=regrown,
        hamming=pruned + regrown,
        jaccard=jaccard(kept - regrown, kept + pruned),
    )


def mask_history(run: Run) -> MaskHistory | None:
    """Statistics of every global mask record of a run, streamed one record at a time.

    Parameters
    ----------
    run : Run
        A loaded run.

    Returns
    -------
    MaskHistory or None
        None when the run has no mask records (e.g. FedAvg).
    """
    if not run.has_masks:
        return None
    return mask_history_from_records(run.mask_tensors, run.iter_masks(), run.rounds_done)


def mask_history_from_records(
    tensors: Sequence[MaskTensor], records: Iterable[MaskRecord], rounds_done: int | None = None
) -> MaskHistory:
    """`mask_history` over any iterable of records (for tests and other readers).

    ``rounds_done`` is the run's last completed round (default: the last record's round).
    """
    trackers = [_TensorTracker(t) for t in tensors]
    per_tensor: list[MaskRecordStats] = []
    overall: list[MaskRecordStats] = []
    rounds: list[int] = []
    for rec in records:
        parts = [tr.update(rec.round, rec.packed[tr.tensor.name]) for tr in trackers]
        per_tensor.extend(parts)
        overall.append(_combine(rec.round, parts, first=not rounds))
        rounds.append(rec.round)

    summaries: dict[str, MaskTensorSummary] = {}
    for tr in trackers:
        summaries[tr.tensor.name] = MaskTensorSummary(
            tensor=tr.tensor.name,
            numel=tr.tensor.numel,
            records=len(rounds),
            first_round=rounds[0] if rounds else 0,
            last_round=rounds[-1] if rounds else 0,
            final_sparsity=tr.last.sparsity if tr.last else float("nan"),
            total_pruned=tr.total_pruned,
            total_regrown=tr.total_regrown,
            stable_after_round=stable_after(rounds, tr.changed, rounds_done),
            ever_regrown=popcount(tr.ever_regrown),
        )
    overall_changed = [False] + [(s.hamming or 0) > 0 for s in overall[1:]]
    summaries[OVERALL] = MaskTensorSummary(
        tensor=OVERALL,
        numel=sum(t.numel for t in tensors),
        records=len(rounds),
        first_round=rounds[0] if rounds else 0,
        last_round=rounds[-1] if rounds else 0,
        final_sparsity=overall[-1].sparsity if overall else float("nan"),
        total_pruned=sum(tr.total_pruned for tr in trackers),
        total_regrown=sum(tr.total_regrown for tr in trackers),
        stable_after_round=stable_after(rounds, overall_changed, rounds_done),
        ever_regrown=sum(popcount(tr.ever_regrown) for tr in trackers),
    )
    return MaskHistory(
        rounds=np.asarray(rounds, dtype=np.int64),
        tensors=tuple(t.name for t in tensors),
        per_tensor=per_tensor,
        overall=overall,
        summaries=summaries,
        rounds_done=max([rounds_done or 0, *rounds[-1:]]),
    )


# --- client agreement -------------------------------------------------------------------------


@dataclass(frozen=True)
class ClientAgreement:
    """How much the client-local masks of one round agree (one tensor or `OVERALL`).

    Attributes
    ----------
    round : int
        Round.
    tensor : str
        Tensor name, or `OVERALL`.
    clients : int
        Number of clients with a mask this round.
    numel : int
        Number of weights.
    mean_jaccard, min_jaccard, max_jaccard : float
        Over all pairs of clients (NaN with fewer than two clients).
    kept_by : numpy.ndarray
        int64, length ``clients + 1``: positions kept by exactly k clients.
    """

    round: int
    tensor: str
    clients: int
    numel: int
    mean_jaccard: float
    min_jaccard: float
    max_jaccard: float
    kept_by: np.ndarray

    @property
    def kept_by_all_fraction(self) -> float:
        """Fraction of positions every client keeps (the clients' consensus support)."""
        return float(self.kept_by[-1]) / self.numel if self.numel else 0.0

    @property
    def kept_by_none_fraction(self) -> float:
        """Fraction of positions no client keeps."""
        return float(self.kept_by[0]) / self.numel if self.numel else 0.0


def _agreement(rnd: int, tensor: str, numel: int, gram: np.ndarray, kept_by: np.ndarray):
    pairs = pairwise_jaccard(gram)
    if pairs.size:
        mean, lo, hi = float(pairs.mean()), float(pairs.min()), float(pairs.max())
    else:
        mean = lo = hi = float("nan")
    return ClientAgreement(rnd, tensor, gram.shape[0], numel, mean, lo, hi, kept_by)


def client_agreement_for_round(group: ClientMaskRound) -> list[ClientAgreement]:
    """Agreement between the clients of one round, per tensor and `OVERALL` (last)."""
    rows: list[ClientAgreement] = []
    n = len(group.clients)
    gram_all = np.zeros((n, n), dtype=np.int64)
    kept_all = np.zeros(n + 1, dtype=np.int64)
    for name, t in group.tensors.items():
        gram, kept_by = gram_and_histogram(group.packed[name], t.numel)
        gram_all += gram
        kept_all += kept_by
        rows.append(_agreement(group.round, name, t.numel, gram, kept_by))
    numel = sum(t.numel for t in group.tensors.values())
    rows.append(_agreement(group.round, OVERALL, numel, gram_all, kept_all))
    return rows


def client_agreement(run: Run) -> list[ClientAgreement]:
    """Client-mask agreement for every round that has client masks.

    Parameters
    ----------
    run : Run
        A loaded run.

    Returns
    -------
    list of ClientAgreement
        Round-major; per round one entry per tensor then one `OVERALL`. Empty when the
        run recorded no client masks.
    """
    if not run.has_client_masks:
        return []
    rows: list[ClientAgreement] = []
    for group in run.iter_client_masks():
        rows.extend(client_agreement_for_round(group))
    return rows
