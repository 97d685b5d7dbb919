"""Moving per-client state between ranks: personalised all-to-all and scatter of small dicts.

A client's persistent state lives on its home rank; a round may train the client on
another rank, so the state travels there before training and back after it. Each rank
sends one dict per destination (client id -> state), pickled by mpi4py; on one rank
nothing travels.
"""

from __future__ import annotations

from typing import Any

from .world import World


def alltoall_dicts(world: World, outgoing: list[dict[int, Any]]) -> dict[int, Any]:
    """Send ``outgoing[r]`` to rank ``r``; return the union of what every rank sent here.

    Parameters
    ----------
    world : World
        The run's ranks (collective: every rank calls it in the same round).
    outgoing : list of dict
        One dict per destination rank (``client id -> state``); empty dicts send nothing
        but an empty message.
    """
    if world.size == 1:
        return dict(outgoing[0])
    received: dict[int, Any] = {}
    for part in world.comm.alltoall(outgoing):
        received.update(part)
    return received


def scatter_dicts(world: World, parts: list[dict[int, Any]] | None) -> dict[int, Any]:
    """Rank 0's ``parts[r]`` on rank ``r`` (``parts`` is only read on rank 0)."""
    if world.size == 1:
        return dict(parts[0])
    return world.comm.scatter(parts, root=0)
