"""Where persistent client state lives between rounds: each client's home rank.

The round's schedule balances clients over ranks by size, so a client may train on a
different rank every time it is sampled. Its state therefore has a fixed home, rank
``client % world_size``, whose `ClientStateStore` keeps it between participations. Each
round, before training, every rank asks the home ranks for the states of its clients
(an all-to-all of ids) and receives them; after the uploads, the new states of guests go
back home. The state a client trains with is thus the one it left the last time,
whichever ranks were involved, and exact (float bits kept, masks bit-packed), so a run
is bit-identical for any number of ranks. Nothing travels on one rank, and methods
without client state cost no collective at all.

Memory: guests wait in the rank's own store, under the same budget (spilling like home
states), and states travel in steps of at most `CHUNK_BYTES` (and budget / ranks) per
destination, so a rank's resident state stays near ``client_state.budget_mb`` plus a
few messages, not the whole cohort's states.

Checkpoints stream the states to rank 0 a bounded step at a time (`ClientStates.to_root`),
which writes each step into the checkpoint file as it comes; a resume reads them back in
steps and scatters each to the home ranks of the new world size (`ClientStates.restore`).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

from ..comm.state_exchange import alltoall_dicts, scatter_dicts
from ..comm.world import World
from ..errors import InputError
from ..store.checkpoint import Checkpoint, ClientChunks
from .store import ClientStateStore

MB = 2**20
CHUNK_BYTES = 64 * MB  # states per destination and exchange step (at least one)
# States all ranks together send to rank 0 in one checkpoint step (at least one each):
# rank 0's peak while it writes a checkpoint is a few times this (pickles in and out).
CHECKPOINT_STEP_BYTES = 16 * MB


class ClientStates:
    """The run's per-client state, kept on home ranks and lent for training.

    Parameters
    ----------
    world : World
        The run's ranks.
    store : ClientStateStore or None
        This rank's store of its home clients; None when the method keeps no state.
    """

    def __init__(self, world: World, store: ClientStateStore | None) -> None:
        self.world = world
        self.store = store
        self.outbox: list[int] = []  # guests trained here this round, to go home

    @classmethod
    def for_run(cls, config, world: World, algorithm) -> ClientStates:
        """The store the algorithm's declared state needs (``config.client_state``)."""
        arrays = dict(getattr(algorithm, "client_state_arrays", {}) or {})
        if not arrays:
            return cls(world, None)
        cfg = config.client_state
        world.agree_on_input_errors(check_spill_dir(cfg.spill_dir))  # collective
        return cls(world, ClientStateStore(arrays, int(cfg.budget_mb * MB), cfg.spill_dir))

    @property
    def active(self) -> bool:
        return self.store is not None

    def home(self, client: int) -> int:
        """The rank that keeps ``client``'s state between rounds."""
        return client % self.world.size

    # ------------------------------------------------------------- per round
    def fetch(self, mine: np.ndarray) -> None:
        """Collective: bring the states of ``mine``, the clients this rank trains this round.

        Each rank asks every home rank for its clients (one all-to-all of ids); each home
        rank then sends the states it holds (`_move`). A guest's state waits in this
        rank's store, under the same memory budget, until `load`.
        """
        if not self.active:
            return
        requests: list[dict] = [{} for _ in range(self.world.size)]
        for client in mine.tolist():
            requests[self.home(client)][client] = self.world.rank
        asked = alltoall_dicts(self.world, requests)
        pending: list[list[int]] = [[] for _ in range(self.world.size)]
        for client, rank in sorted(asked.items()):
            if rank != self.world.rank and client in self.store:
                pending[rank].append(client)
        self._move(pending)

    def take(self, client: int) -> dict[str, np.ndarray] | None:
        """``client``'s state for its training (None at its first participation, or when
        the method keeps no state); the client's `keep` gives it back."""
        if not self.active:
            return None
        return self.store.take(client)

    def keep(self, client: int, state: dict[str, np.ndarray] | None) -> None:
        """Store ``client``'s new state after its upload (nothing when the method keeps none)."""
        if self.active:
            self.store.put(client, state or {})
            if self.home(client) != self.world.rank:
                self.outbox.append(client)

    def send_back(self) -> None:
        """Collective: return the guests' new states to their home ranks' stores."""
        if not self.active:
            return
        pending: list[list[int]] = [[] for _ in range(self.world.size)]
        for client in sorted(self.outbox):
            pending[self.home(client)].append(client)
        self.outbox = []
        self._move(pending)

    def _move(self, pending: list[list[int]]) -> None:
        """Collective: send the stored states of ``pending[r]`` to rank ``r``'s store.

        In steps of at most ``min(CHUNK_BYTES, budget / ranks)`` per destination (one
        state at least), so the states in flight stay small next to the memory budget
        whatever the cohort; every rank takes part in every step until no rank has
        anything left (nothing at all on one rank).
        """
        step_bytes = min(CHUNK_BYTES, self.store.budget_bytes // self.world.size)
        per_step = max(1, step_bytes // max(self.store.record_bytes, 1))
        while self.world.any_flag(any(pending)):
            outgoing: list[dict] = [{} for _ in range(self.world.size)]
            for rank, clients in enumerate(pending):
                for client in clients[:per_step]:
                    outgoing[rank][client] = self.store.take(client)
                del clients[:per_step]
            received = alltoall_dicts(self.world, outgoing)
            del outgoing
            for client in sorted(received):
                self.store.put(client, received[client])

    # ----------------------------------------------------------- checkpoints
    @contextmanager
    def to_root(self) -> Iterator[ClientChunks | None]:
        """Collective: every client's state to rank 0 in chunks, for a checkpoint.

        On rank 0 it yields `ClientChunks` whose chunks arrive as rank 0 reads them (None
        elsewhere, and everywhere when the method keeps no state). In each step every
        rank sends at most ``min(CHECKPOINT_STEP_BYTES, budget) / ranks`` of states (one
        state at least), so rank 0 holds about one step of states at a time, however many
        clients there are. Leaving the block finishes the steps rank 0 did not read (a write
        that failed half-way), so no rank is left waiting.
        """
        if not self.active:
            yield None
            return
        world, store = self.world, self.store
        ids = store.clients()
        counts = np.zeros(world.size, np.int64)
        counts[world.rank] = len(ids)
        counts = world.sum_int64(counts)  # every rank learns how many states each sends
        state_bytes = sum(s.length * s.dtype.itemsize for s in store.specs)
        step_bytes = min(CHECKPOINT_STEP_BYTES, store.budget_bytes) // world.size
        per_step = max(1, step_bytes // max(state_bytes, 1))
        steps = -(-int(counts.max()) // per_step)

        def chunks() -> Iterator[dict]:
            for step in range(steps):
                mine = {c: store.peek(c) for c in ids[step * per_step : (step + 1) * per_step]}
                parts = world.gather_objects(mine)
                del mine
                if parts is not None:
                    merged = {}
                    for part in parts:
                        merged.update(part)
                    del parts
                    yield merged

        stream = chunks()
        arrays = {s.name: (s.dtype, s.length) for s in store.specs}
        try:
            yield ClientChunks(arrays, int(counts.sum()), stream) if world.is_root else None
        finally:
            for _ in stream:  # the steps not read (the other ranks' side of every step)
                pass

    def restore(self, checkpoint: Checkpoint | None) -> None:
        """Collective: rank 0's checkpointed states to their home ranks, in chunks.

        Rank 0 reads the checkpoint's client rows in steps of `CHECKPOINT_STEP_BYTES` and
        scatters each step to the home ranks, so no rank holds them all.

        Raises
        ------
        InputError
            The checkpoint lacks a state array the method needs.
        """
        if not self.active:
            return
        world = self.world
        error = None
        if world.is_root:
            names = [spec.name for spec in self.store.specs]
            held = checkpoint.client_arrays()
            missing = [n for n in names if n not in held]
            if missing and checkpoint.client_count():
                error = f"the checkpoint lacks client state {missing}"
        error = world.bcast_object(error)
        if error:
            raise InputError(error)
        source = checkpoint.client_chunks(CHECKPOINT_STEP_BYTES) if world.is_root else None
        while True:
            parts = None
            if world.is_root:
                chunk = next(source, None)
                parts = None if chunk is None else [{} for _ in range(world.size)]
                for client, state in (chunk or {}).items():
                    parts[self.home(client)][client] = state
            if not world.any_flag(parts is not None):
                return
            if parts is None:  # rank 0 scatters; the others receive
                parts = [{} for _ in range(world.size)]
            for client, state in sorted(scatter_dicts(world, parts).items()):
                self.store.put(client, state)

    def close(self) -> None:
        """Delete this rank's spill file."""
        if self.active:
            self.store.close()


def check_spill_dir(path) -> InputError | None:
    """An error when ``client_state.spill_dir`` cannot hold spill files on this node."""
    if path is None:
        return None
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        return InputError(f"client_state.spill_dir {path!r} cannot be created: {exc.strerror}")
    if not os.access(path, os.W_OK | os.X_OK):
        return InputError(f"client_state.spill_dir {path!r} is not writable")
    return None
