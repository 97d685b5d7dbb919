"""A client's local batch order, and the batch orders of a group packed into arrays.

`client_batches` replays the batch order of `hpc_fedprune.training.local.LocalTrainer` from the
same keyed stream (seed, CLIENT, round, client), so a client trained in a group sees exactly
the samples, in the same steps, that it would see trained alone. `pack_group` lays the
clients' batches side by side for a batched step: padded to the largest batch, with a
per-sample loss weight (1 / real batch size, 0 on padding) and a per-step active flag.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..rng import Stream, numpy_rng


def epoch_order(
    rng: np.random.Generator, indices: np.ndarray, batch_size: int, drop_last: bool
) -> tuple[np.ndarray, range]:
    """One epoch's sample order (a fresh ``rng.permutation``) and its batch starts.

    Batch ``i`` is ``order[lo : lo + batch_size]`` for the ``i``-th ``lo`` of the range.

    The single definition of the batch order: `hpc_fedprune.training.local.LocalTrainer`,
    grouped training (`client_batches`) and the exploration phase all draw their epochs
    here, so a client sees the same batches whichever of them trains it.
    """
    n = len(indices)
    batch = min(batch_size, n)
    order = np.asarray(indices, dtype=np.int64)[rng.permutation(n)]
    stop = n - (n % batch) if (drop_last and n >= batch) else n
    return order, range(0, stop, batch)


def batches_per_epoch(n: int, batch_size: int, drop_last: bool) -> int:
    """Local steps in one epoch over ``n`` samples (the length of `epoch_order`'s range)."""
    batch = min(batch_size, n)
    stop = n - (n % batch) if (drop_last and n >= batch) else n
    return len(range(0, stop, batch))


def client_batches(
    seed: int,
    round_index: int,
    client: int,
    indices: np.ndarray,
    *,
    batch_size: int,
    local_epochs: int,
    local_steps: int = 0,
    drop_last: bool = False,
    key: tuple[int, ...] = (),
) -> list[np.ndarray]:
    """The sample indices of every local step of one client, in step order.

    Parameters
    ----------
    seed, round_index, client : int
        Key of the client's stream; one ``rng.permutation`` per epoch, as LocalTrainer draws.
    indices : numpy.ndarray
        The client's training sample indices.
    batch_size, local_epochs, local_steps, drop_last
        The training section's values (``local_steps > 0`` overrides the epochs).
    key : tuple of int
        Extends the stream's key, as ``LocalTrainer.train``'s ``key`` does.

    Returns
    -------
    list of numpy.ndarray
        One int64 array per step (the last of an epoch may be shorter).
    """
    indices = np.asarray(indices, dtype=np.int64)
    n = len(indices)
    if n == 0:
        return []
    rng = numpy_rng(seed, Stream.CLIENT, round_index, client, *key)
    batch = min(batch_size, n)
    target = local_steps if local_steps > 0 else None
    out: list[np.ndarray] = []
    epoch = 0
    while True:
        shuffled, starts = epoch_order(rng, indices, batch, drop_last)
        for lo in starts:
            out.append(shuffled[lo : lo + batch])
            if target is not None and len(out) >= target:
                return out
        epoch += 1
        if target is None and epoch >= local_epochs:
            return out


@dataclass
class PackedGroup:
    """The batches of G clients over S steps, ready to copy to the device.

    Attributes
    ----------
    index : numpy.ndarray
        int64 ``(S, G, B)``: sample indices; padding repeats a real index of the client.
    weight : numpy.ndarray
        float32 ``(S, G, B)``: ``1 / n_real`` on a step's real samples, 0 on padding, so the
        weighted sum of per-sample losses is the mean over the real samples.
    active : numpy.ndarray
        float32 ``(S, G)``: 1 while the client still has steps, then 0 (its weights stay).
    sizes : list of list of int
        Real batch sizes of each client's steps, in step order.
    """

    index: np.ndarray
    weight: np.ndarray
    active: np.ndarray
    sizes: list[list[int]]


def pack_group(batches: list[list[np.ndarray]]) -> PackedGroup:
    """Pack the per-client step lists of `client_batches` into `PackedGroup` arrays."""
    g = len(batches)
    s = max((len(b) for b in batches), default=0)
    width = max((len(x) for b in batches for x in b), default=1)
    index = np.zeros((s, g, width), dtype=np.int64)
    weight = np.zeros((s, g, width), dtype=np.float32)
    active = np.zeros((s, g), dtype=np.float32)
    for j, steps in enumerate(batches):
        for k, sel in enumerate(steps):
            index[k, j, : len(sel)] = sel
            index[k, j, len(sel) :] = sel[0]  # any real sample: its weight is 0
            weight[k, j, : len(sel)] = np.float32(1.0) / np.float32(len(sel))
            active[k, j] = 1.0
    return PackedGroup(index, weight, active, [[len(x) for x in b] for b in batches])
