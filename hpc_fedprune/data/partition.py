"""Splitting a training set over simulated clients.

``partition`` sees only the targets, the number of clients and the seed: never the MPI
world. The same config therefore gives every client the same samples on 1 or 64 ranks,
and every rank can compute the whole partition itself without communicating. All
randomness comes from ``numpy_rng(seed, Stream.PARTITION, ...)``.

Schemes (``partition_schemes()``; the options are keyword arguments of ``partition``)

``iid``
    A seeded shuffle cut into near-equal chunks (sizes differ by at most one).
``iid_balanced``
    Label-balanced IID, as in FedDIP: every client gets the same share of every class
    (per-class counts differ by at most one between clients, and so do client sizes).
``dirichlet`` (``alpha=0.5``, ``min_size=10``)
    For each class, the share of each client is drawn from Dir(alpha). Small alpha gives
    each client a few dominant labels; large alpha approaches ``iid``. As in the common FL
    code (NIID-Bench, FedLab), the whole draw is repeated until every client has at least
    ``min_size`` samples; after ``MAX_TRIES`` failures it is an ``InputError``.
``shards`` (``classes_per_client=2``)
    McMahan et al.'s sort-and-cut: ``num_clients * classes_per_client`` shards, each a
    slice of one class, and each client holds ``classes_per_client`` shards of *distinct*
    classes, so it sees exactly that many labels. (McMahan's random deal can give a client
    two shards of one class, or a shard that straddles two classes.) Classes get shards in
    proportion to their size, at most one per client, and at least one each when there
    are enough shards, so that every sample is used; with fewer shards than classes, the
    largest classes get them and the others' samples are left out.
``quantity_skew`` (``power=1.5``, ``sizes=None``)
    Clients of unequal size with IID labels: client ``k`` gets a share proportional to
    ``(k + 1) ** -power`` (client 0 the largest; ``power=0`` gives equal sizes), or to
    ``sizes[k]`` when relative ``sizes`` are given, e.g. the brain-age federation's
    ``[2401, 1765, 1303, 964, 714, 528, 391, 290]``. Shares are rounded by largest
    remainder, so counts are within one sample of the exact ratios.

Regression targets (float arrays) are turned into labels by ``as_labels``: ``bins``
quantile bins of the target, so that label-skewed schemes become target-range skew (e.g.
clients holding mostly young or mostly old subjects).
"""

from __future__ import annotations

import heapq
from collections.abc import Sequence

import numpy as np
from scipy.stats import wasserstein_distance

from ..errors import InputError
from ..registry import PARTITIONS
from ..rng import Stream, numpy_rng

SCHEMES = PARTITIONS

MAX_TRIES = 1000  # dirichlet: draws before giving up on min_size

# Keys of the PARTITION stream, so that the client split and local test splits never
# share numbers.
_KEY_PARTITION = 0
_KEY_LOCAL_TEST = 1


def partition(
    targets: np.ndarray,
    num_clients: int,
    scheme: str,
    *,
    seed: int,
    bins: int = 10,
    **options,
) -> list[np.ndarray]:
    """Split sample indices over clients.

    Parameters
    ----------
    targets : numpy.ndarray
        1-D training targets: integer labels, or float regression targets.
    num_clients : int
        Number of clients.
    scheme : str
        One of ``partition_schemes()`` (see the module docstring).
    seed : int
        The run's seed; the result depends on nothing else besides the arguments.
    bins : int
        Quantile bins used as labels for float targets (ignored for integer labels).
    **options
        The scheme's options (``partition_options(scheme)`` lists them).

    Returns
    -------
    list of numpy.ndarray
        One sorted int64 index array per client; no index appears twice.

    Raises
    ------
    InputError
        Unknown scheme or option, or a partition that cannot be made (more clients than
        samples, more classes per client than classes, ...).
    """
    labels = as_labels(targets, bins=bins)
    k = _int("num_clients", num_clients, 1)
    if k > len(labels):
        raise InputError(f"partition: {k} clients but only {len(labels)} samples")
    rng = numpy_rng(seed, Stream.PARTITION, _KEY_PARTITION)
    parts = SCHEMES.call(scheme, (labels, k), {"rng": rng}, options)
    return [np.sort(p).astype(np.int64) for p in parts]


def partition_schemes() -> tuple[str, ...]:
    """Names accepted by ``partition``."""
    return SCHEMES.names()


def partition_options(scheme: str) -> tuple[str, ...]:
    """The options that ``scheme`` accepts (besides ``bins``, which all accept)."""
    return SCHEMES.options(scheme)


def as_labels(targets: np.ndarray, *, bins: int = 10) -> np.ndarray:
    """Integer labels for partitioning: labels as they are, float targets binned.

    Parameters
    ----------
    targets : numpy.ndarray
        1-D integer labels (>= 0) or float targets.
    bins : int
        For float targets: the number of quantile bins; label ``b`` is the ``b``-th bin
        from the lowest target (bins of tied values may merge, leaving some labels empty).

    Returns
    -------
    numpy.ndarray
        int64 labels.
    """
    t = np.asarray(targets)
    if t.ndim != 1 or len(t) == 0:
        raise InputError(f"partition: targets must be a non-empty 1-D array, got shape {t.shape}")
    if np.issubdtype(t.dtype, np.floating):
        if not np.all(np.isfinite(t)):
            raise InputError("partition: targets contain NaN or infinity")
        b = _int("bins", bins, 2)
        edges = np.quantile(t.astype(np.float64), np.linspace(0, 1, b + 1)[1:-1])
        return np.searchsorted(edges, t, side="right").astype(np.int64)
    if not (np.issubdtype(t.dtype, np.integer) or t.dtype == bool):
        raise InputError(f"partition: targets must be integer labels or floats, got {t.dtype}")
    if t.min() < 0:
        raise InputError("partition: labels must be >= 0")
    return t.astype(np.int64)


# ----------------------------------------------------------------------------- schemes


@SCHEMES.register("iid")
def _iid(labels: np.ndarray, k: int, *, rng: np.random.Generator) -> list[np.ndarray]:
    return np.array_split(rng.permutation(len(labels)), k)


@SCHEMES.register("iid_balanced")
def _iid_balanced(labels: np.ndarray, k: int, *, rng: np.random.Generator) -> list[np.ndarray]:
    # Shuffle within each class, lay the classes end to end and deal the deck round-robin:
    # every class, and the whole set, is spread as evenly as integers allow.
    deck = np.concatenate([rng.permutation(np.flatnonzero(labels == c)) for c in np.unique(labels)])
    # Which clients receive the odd extra samples is random, not always the first ones.
    return [deck[seat::k] for seat in rng.permutation(k)]


@SCHEMES.register("dirichlet")
def _dirichlet(
    labels: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    alpha: float = 0.5,
    min_size: int = 10,
) -> list[np.ndarray]:
    if not _is_number(alpha) or not alpha > 0:
        raise InputError(f"dirichlet: alpha must be a number > 0, got {alpha!r}")
    min_size = _int("dirichlet: min_size", min_size, 0)
    if min_size * k > len(labels):
        raise InputError(
            f"dirichlet: {k} clients x min_size {min_size} exceeds the {len(labels)} samples"
        )
    by_class = [np.flatnonzero(labels == c) for c in np.unique(labels)]
    for _ in range(MAX_TRIES):
        owner = np.empty(len(labels), dtype=np.int64)
        for members in by_class:
            share = rng.dirichlet(np.full(k, float(alpha)))
            # Cut points of the cumulative shares, floored, as in the common FL code.
            cuts = (np.cumsum(share)[:-1] * len(members)).astype(np.int64)
            counts = np.diff(cuts, prepend=0, append=len(members))
            owner[rng.permutation(members)] = np.repeat(np.arange(k), counts)
        sizes = np.bincount(owner, minlength=k)
        if sizes.min() >= min_size:
            return _groups(owner, sizes)
    raise InputError(
        f"dirichlet: no draw in {MAX_TRIES} gave all {k} clients >= {min_size} samples "
        f"(alpha {alpha}); raise alpha, lower min_size or use fewer clients"
    )


@SCHEMES.register("shards")
def _shards(
    labels: np.ndarray, k: int, *, rng: np.random.Generator, classes_per_client: int = 2
) -> list[np.ndarray]:
    c = _int("shards: classes_per_client", classes_per_client, 1)
    classes, counts = np.unique(labels, return_counts=True)
    if c > len(classes):
        raise InputError(f"shards: classes_per_client {c} exceeds the {len(classes)} classes")
    # A class can give at most one shard to each client, and each shard needs a sample.
    caps = np.minimum(counts, k)
    if caps.sum() < k * c:
        raise InputError(
            f"shards: {k} clients x {c} classes need {k * c} single-class shards, "
            f"but the classes' sizes allow only {caps.sum()}"
        )
    num_shards = _dhondt(counts, caps, k * c, rng)
    owner = np.full(len(labels), -1, dtype=np.int64)  # -1: a class that got no shard
    room = np.full(k, c)
    # Give each class's shards to the clients with the most room left (random among
    # equals). Rooms then never differ by more than one, so the clients with room always
    # suffice: the deal cannot get stuck, and no client gets a class twice.
    for j in np.argsort(-num_shards + rng.random(len(classes)), kind="stable"):
        if num_shards[j] == 0:
            continue
        takers = np.argsort(-(room + rng.random(k)), kind="stable")[: num_shards[j]]
        room[takers] -= 1
        members = rng.permutation(np.flatnonzero(labels == classes[j]))
        for taker, shard in zip(takers, np.array_split(members, num_shards[j]), strict=True):
            owner[shard] = taker
    used = owner >= 0
    order = np.flatnonzero(used)[np.argsort(owner[used], kind="stable")]
    return np.split(order, np.cumsum(np.bincount(owner[used], minlength=k))[:-1])


@SCHEMES.register("quantity_skew")
def _quantity_skew(
    labels: np.ndarray,
    k: int,
    *,
    rng: np.random.Generator,
    power: float = 1.5,
    sizes: Sequence[float] | None = None,
) -> list[np.ndarray]:
    if sizes is not None:
        weights = np.asarray(sizes, dtype=np.float64)
        if weights.shape != (k,) or not np.all(np.isfinite(weights)) or np.any(weights <= 0):
            raise InputError(f"quantity_skew: sizes must be {k} positive numbers, got {sizes!r}")
    else:
        if not _is_number(power) or not power >= 0:
            raise InputError(f"quantity_skew: power must be a number >= 0, got {power!r}")
        weights = np.arange(1, k + 1, dtype=np.float64) ** -float(power)
    counts = _largest_remainder(len(labels), weights)
    if counts.min() < 1:
        raise InputError(
            f"quantity_skew: client {int(counts.argmin())} would get no samples out of "
            f"{len(labels)}; use fewer clients or flatter sizes"
        )
    return np.split(rng.permutation(len(labels)), np.cumsum(counts)[:-1])


# ----------------------------------------------------------------------------- helpers


def _groups(owner: np.ndarray, sizes: np.ndarray) -> list[np.ndarray]:
    """Indices grouped by owner (owner values 0..len(sizes)-1, all samples owned)."""
    return np.split(np.argsort(owner, kind="stable"), np.cumsum(sizes)[:-1])


def _largest_remainder(total: int, weights: np.ndarray) -> np.ndarray:
    """Integers summing to ``total`` in proportion to ``weights``, each within 1 of exact."""
    exact = total * weights / weights.sum()
    counts = np.floor(exact).astype(np.int64)
    extra = np.argsort(-(exact - counts), kind="stable")[: total - counts.sum()]
    counts[extra] += 1
    return counts


def _dhondt(
    sizes: np.ndarray, caps: np.ndarray, total: int, rng: np.random.Generator
) -> np.ndarray:
    """Split ``total`` seats in proportion to ``sizes`` (D'Hondt), seat ``j`` at most ``caps[j]``.

    When there are at least as many seats as parties, every party first gets one (so
    that shards use every class, and so every sample). Ties are broken at random, so that
    with fewer seats than equal parties it is not always the lowest labels that win.
    """
    seats = np.full(len(sizes), 1 if total >= len(sizes) else 0, dtype=np.int64)
    tiebreak = rng.random(len(sizes))
    heap = [
        (-sizes[j] / (seats[j] + 1), tiebreak[j], j)
        for j in range(len(sizes))
        if seats[j] < caps[j]
    ]
    heapq.heapify(heap)
    for _ in range(total - int(seats.sum())):
        _, t, j = heapq.heappop(heap)
        seats[j] += 1
        if seats[j] < caps[j]:
            heapq.heappush(heap, (-sizes[j] / (seats[j] + 1), t, j))
    return seats


def _int(what: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        raise InputError(f"{what} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float, np.number)) and not isinstance(value, bool)


# ----------------------------------------------------------------------------- local tests


def split_local_test(
    parts: Sequence[np.ndarray], fraction: float, *, seed: int
) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Hold out part of each client's samples as that client's local test set.

    Client ``k`` draws from its own stream ``(seed, PARTITION, 1, k)``, so its split does
    not depend on the other clients. It holds out ``round(fraction * n_k)`` samples, but
    always keeps at least one for training.

    Parameters
    ----------
    parts : sequence of numpy.ndarray
        Index arrays from ``partition``.
    fraction : float
        Share held out, in [0, 1).
    seed : int
        The run's seed.

    Returns
    -------
    train_parts, test_parts : list of numpy.ndarray
        Sorted int64 index arrays; ``train_parts[k]`` and ``test_parts[k]`` split ``parts[k]``.
    """
    if not _is_number(fraction) or not 0 <= fraction < 1:
        raise InputError(f"local test fraction must be in [0, 1), got {fraction!r}")
    train, test = [], []
    for client, part in enumerate(parts):
        part = np.sort(np.asarray(part, dtype=np.int64))
        n_test = min(int(np.floor(fraction * len(part) + 0.5)), max(len(part) - 1, 0))
        rng = numpy_rng(seed, Stream.PARTITION, _KEY_LOCAL_TEST, client)
        held = np.zeros(len(part), dtype=bool)
        held[rng.permutation(len(part))[:n_test]] = True
        train.append(part[~held])
        test.append(part[held])
    return train, test


# ----------------------------------------------------------------------------- statistics


def partition_stats(
    labels: np.ndarray,
    parts: Sequence[np.ndarray],
    num_classes: int,
    *,
    targets: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Sizes and label mix of each client, for the log and the run file.

    Parameters
    ----------
    labels : numpy.ndarray
        Integer labels of the partitioned set (``as_labels(targets, bins=...)`` for
        regression targets).
    parts : sequence of numpy.ndarray
        Index arrays, one per client.
    num_classes : int
        Number of label values (``bins`` for regression).

    Returns
    -------
    dict of str to numpy.ndarray
        ``sizes`` (K,) samples per client; ``label_counts`` (K, C) samples per client and
        label; ``classes_per_client`` (K,) labels present; ``label_tv`` (K,) total
        variation distance between the client's label distribution and that of all
        partitioned samples (0: same mix, 1: disjoint labels; NaN for an empty client);
        and 0-d summaries ``num_samples``, ``size_cv`` (std / mean of the sizes) and
        ``label_tv_mean`` (mean over non-empty clients; a one-number measure of skew).
        With regression ``targets``, also `target_stats`.
    targets : numpy.ndarray, optional
        Float regression targets of the partitioned set (same indexing as ``labels``).
    """
    labels = np.asarray(labels, dtype=np.int64)
    k = len(parts)
    sizes = np.array([len(p) for p in parts], dtype=np.int64)
    owner = np.repeat(np.arange(k), sizes)
    taken = labels[np.concatenate(parts).astype(np.int64)] if k else np.zeros(0, np.int64)
    if len(taken) and (taken.min() < 0 or taken.max() >= num_classes):
        raise InputError(f"partition_stats: labels outside [0, {num_classes})")
    counts = np.bincount(owner * num_classes + taken, minlength=k * num_classes)
    counts = counts.reshape(k, num_classes).astype(np.int64)
    pooled = counts.sum(axis=0) / max(counts.sum(), 1)
    mix = np.divide(counts, sizes[:, None], out=np.zeros(counts.shape), where=sizes[:, None] > 0)
    tv = np.where(sizes > 0, 0.5 * np.abs(mix - pooled).sum(axis=1), np.nan)
    mean_size = sizes.mean() if k else 0.0
    extra = {} if targets is None else target_stats(targets, parts)
    return {
        **extra,
        "sizes": sizes,
        "label_counts": counts,
        "classes_per_client": (counts > 0).sum(axis=1).astype(np.int64),
        "label_tv": tv,
        "num_samples": np.asarray(sizes.sum(), dtype=np.int64),
        "size_cv": np.asarray(sizes.std() / mean_size if mean_size > 0 else 0.0),
        "label_tv_mean": np.asarray(tv[sizes > 0].mean() if np.any(sizes > 0) else 0.0),
    }


def target_stats(targets: np.ndarray, parts: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
    """How each client's regression targets are distributed, for the log and the run file.

    Parameters
    ----------
    targets : numpy.ndarray
        1-D float targets of the partitioned set.
    parts : sequence of numpy.ndarray
        Index arrays, one per client.

    Returns
    -------
    dict of str to numpy.ndarray
        Per client (K,), float64, NaN for an empty client: ``target_mean``, ``target_std``
        (population std), ``target_min``, ``target_max`` and ``target_w1``, the 1-D
        Wasserstein (earth mover's) distance between the client's targets and all
        partitioned targets, in the targets' units (0: the same distribution); and the
        0-d ``target_w1_mean`` (mean over non-empty clients; the regression counterpart
        of ``label_tv_mean``).
    """
    t = np.asarray(targets, dtype=np.float64)
    parts = [np.asarray(p, dtype=np.int64) for p in parts]
    pooled = t[np.concatenate(parts)] if parts else np.zeros(0)
    rows = []
    for p in parts:
        if len(p) == 0:
            rows.append((np.nan,) * 5)
            continue
        v = t[p]
        rows.append((v.mean(), v.std(), v.min(), v.max(), wasserstein_distance(v, pooled)))
    table = np.array(rows, dtype=np.float64).reshape(len(parts), 5)
    w1 = table[:, 4]
    return {
        "target_mean": table[:, 0],
        "target_std": table[:, 1],
        "target_min": table[:, 2],
        "target_max": table[:, 3],
        "target_w1": w1,
        "target_w1_mean": np.asarray(np.nanmean(w1) if np.isfinite(w1).any() else 0.0),
    }


def describe_skew(stats: dict) -> str:
    """How non-IID a partition is, in words (from `partition_stats`): label or target skew."""
    if "target_w1_mean" in stats:
        return (
            f"target skew {float(stats['target_w1_mean']):.3g} "
            "(mean 1-D Wasserstein distance of a client's targets to all, in target units)"
        )
    return (
        f"label skew {float(stats['label_tv_mean']):.3f} "
        "(mean total-variation distance to the global label mix)"
    )
