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

Checkpoints gather every state to rank 0 (`Checkpoint.clients`, ``name -> {client id ->
array}``); a resume hands them to the home ranks of the new world size.
"""

from __future__ import annotations

import os

import numpy as np

from ..comm.state_exchange import alltoall_dicts, gather_dicts, scatter_dicts
from ..comm.world import World
from ..errors import InputError
from .store import ClientStateStore

MB = 2**20
CHUNK_BYTES = 64 * MB  # states per destination and exchange step (at least one)


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
    def gather(self) -> dict:
        """Collective: every client's state on rank 0 as ``name -> {client id -> array}``."""
        if not self.active:
            return {}
        mine = {c: self.store.peek(c) for c in self.store.clients()}
        merged = gather_dicts(self.world, mine)
        if merged is None:
            return {}
        names = [spec.name for spec in self.store.specs]
        return {name: {c: merged[c][name] for c in sorted(merged)} for name in names}

    def restore(self, clients: dict | None) -> None:
        """Collective: rank 0's checkpointed states (``name -> {id -> array}``) to home ranks.

        Raises
        ------
        InputError
            The checkpoint lacks a state array the method needs.
        """
        if not self.active:
            return
        parts = None
        if self.world.is_root:
            names = [spec.name for spec in self.store.specs]
            ids = set().union(*(clients.get(n, {}).keys() for n in names)) if clients else set()
            missing = [n for n in names if ids and n not in clients]
            parts = [{} for _ in range(self.world.size)]
            if not missing:
                for c in sorted(ids):
                    parts[self.home(c)][c] = {n: clients[n][c] for n in names}
            error = f"the checkpoint lacks client state {missing}" if missing else None
        else:
            error = None
        error = self.world.bcast_object(error)
        if error:
            raise InputError(error)
        for client, state in sorted(scatter_dicts(self.world, parts).items()):
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
