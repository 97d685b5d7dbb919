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


def form_groups(cohort: np.ndarray, sizes: np.ndarray, group_size: int) -> list[np.ndarray]:
    """Split the cohort into groups of ``group_size`` clients trained together.

    Clients are ordered by decreasing size (ties by id) and cut into consecutive chunks, so
    a group holds clients of similar sample counts (little padding). Only ids and sizes
    decide, never the world size, so every rank count trains the same groups.

    Parameters
    ----------
    cohort : numpy.ndarray
        Client ids of the round.
    sizes : numpy.ndarray
        Training samples of every client (indexed by client id).
    group_size : int
        Clients per group (the last group may be smaller).

    Returns
    -------
    list of numpy.ndarray
        The groups, each holding its client ids in increasing order.
    """
    order = sorted(cohort.tolist(), key=lambda c: (-int(sizes[c]), c))
    chunks = [order[i : i + group_size] for i in range(0, len(order), group_size)]
    return [np.array(sorted(chunk), dtype=np.int64) for chunk in chunks]


def schedule_groups(
    groups: list[np.ndarray], sizes: np.ndarray, world_size: int
) -> list[list[np.ndarray]]:
    """Assign whole groups to ranks by longest-processing-time first.

    A group's work is its padded size: clients x the largest client's samples. Groups in
    order of decreasing work (ties by first client id) each go to the least loaded rank
    (ties by rank).

    Returns
    -------
    list of list of numpy.ndarray
        For each rank, its groups in order of their first client id.
    """

    def work(group: np.ndarray) -> int:
        return len(group) * max(max(int(sizes[c]) for c in group.tolist()), 1)

    order = sorted(groups, key=lambda g: (-work(g), int(g[0])))
    heap = [(0, r) for r in range(world_size)]
    assigned: list[list[np.ndarray]] = [[] for _ in range(world_size)]
    for group in order:
        load, rank = heapq.heappop(heap)
        assigned[rank].append(group)
        heapq.heappush(heap, (load + work(group), rank))
    return [sorted(a, key=lambda g: int(g[0])) for a in assigned]


def rank_units(
    cohort: np.ndarray, sizes: np.ndarray, world_size: int, rank: int, unit_size: int = 1
) -> list[np.ndarray]:
    """This rank's training units of a round, in training order.

    ``unit_size`` 1: one client per unit, the rank's share of `schedule_cohort`.
    Larger: the groups of `form_groups` that `schedule_groups` gives this rank.
    """
    if unit_size <= 1:
        return [np.array([c]) for c in schedule_cohort(cohort, sizes, world_size)[rank]]
    return schedule_groups(form_groups(cohort, sizes, unit_size), sizes, world_size)[rank]
