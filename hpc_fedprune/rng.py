"""Random streams keyed by (seed, purpose, ...), never by rank and never process-global.

Every random decision in the simulator draws from a generator built here from the run's
seed, a named purpose and the integers that identify the decision (round, client id).
The same decision therefore gets the same numbers on 1 or 64 ranks, on any schedule, and
after a resume. Library code never calls ``np.random.seed`` or ``torch.manual_seed``.
"""

from __future__ import annotations

import enum

import numpy as np


class Stream(enum.IntEnum):
    """Purposes of random streams; the value is mixed into the seed sequence."""

    DATA = 1  # synthetic data generation
    PARTITION = 2  # assigning samples to clients
    COHORT = 3  # which clients take part in a round
    CLIENT = 4  # a client's local training (batch order, dropout)
    MODEL_INIT = 5  # initial weights
    MASK = 6  # random and ERK masks
    EXPLORE = 7  # exploration phases, auxiliary draws of algorithms
    PRIVACY = 8  # member / non-member sets, shadow models
    TIES = 9  # random order among equal scores (pruning decisions that must not favour indices)
    AUGMENT = 10  # crops and flips of training batches


def numpy_rng(seed: int, stream: Stream, *keys: int) -> np.random.Generator:
    """A numpy generator for one decision.

    Parameters
    ----------
    seed : int
        The run's seed.
    stream : Stream
        What the numbers are for.
    *keys : int
        Integers naming the decision, e.g. ``round, client_id``.

    Returns
    -------
    numpy.random.Generator
    """
    entropy = [int(seed), int(stream), *(int(k) for k in keys)]
    return np.random.default_rng(np.random.SeedSequence(entropy))


def derived_seed(seed: int, stream: Stream, *keys: int) -> int:
    """A 63-bit integer seed for one decision (for ``torch.Generator.manual_seed``)."""
    entropy = [int(seed), int(stream), *(int(k) for k in keys)]
    return int(
        np.random.SeedSequence(entropy).generate_state(2, dtype=np.uint32).view(np.uint64)[0] >> 1
    )


def torch_generator(seed: int, stream: Stream, *keys: int, device="cpu"):
    """A ``torch.Generator`` on ``device`` seeded for one decision."""
    import torch

    gen = torch.Generator(device=device)
    gen.manual_seed(derived_seed(seed, stream, *keys))
    return gen
