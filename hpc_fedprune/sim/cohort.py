"""Which clients take part in a round, and which rank trains each of them.

Both answers are pure functions of (seed, round, client sizes, world size): every rank
computes the same cohort and the same schedule without talking to the others. The
cohort never depends on the world size; the schedule does, but only decides *where* a
client is trained, never *how*, so results stay identical for any number of ranks.
"""

from __future__ import annotations

import heapq

import numpy as np

from ..rng import Stream, numpy_rng


def sample_cohort(seed: int, round_index: int, num_clients: int, cohort_size: int) -> np.ndarray:
    """Clients of one round: a uniform sample without replacement, sorted by id.

    Parameters
    ----------
    seed : int
        The run's seed.
    round_index : int
        1-based round.
    num_clients, cohort_size : int
        Population and sample size (``cohort_size <= num_clients``).

    Returns
    -------
    numpy.ndarray
        Sorted int64 client ids.
    """
    if cohort_size >= num_clients:
        return np.arange(num_clients, dtype=np.int64)
    rng = numpy_rng(seed, Stream.COHORT, round_index)
    chosen = rng.choice(num_clients, size=cohort_size, replace=False)
    return np.sort(chosen).astype(np.int64)


def schedule_cohort(cohort: np.ndarray, sizes: np.ndarray, world_size: int) -> list[np.ndarray]:
    """Assign the cohort to ranks, balancing the total number of samples per rank.

    Longest-processing-time first: clients in order of decreasing size (ties by id) each go
    to the rank with the least work so far (ties by rank). Deterministic on every rank.

    Parameters
    ----------
    cohort : numpy.ndarray
        Client ids of the round.
    sizes : numpy.ndarray
        Training samples of every client (indexed by client id).
    world_size : int
        Number of ranks.

    Returns
    -------
    list of numpy.ndarray
        For each rank, its client ids in increasing order.
    """
    order = sorted(cohort.tolist(), key=lambda c: (-int(sizes[c]), c))
    heap = [(0, r) for r in range(world_size)]
    assigned: list[list[int]] = [[] for _ in range(world_size)]
    for client in order:
        load, rank = heapq.heappop(heap)
        assigned[rank].append(client)
        heapq.heappush(heap, (load + max(int(sizes[client]), 1), rank))
    return [np.array(sorted(a), dtype=np.int64) for a in assigned]
