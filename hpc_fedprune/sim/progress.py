"""Progress lines on rank 0 for phases that take long: exploration and long rounds.

The round loop prints one line per round (`hpc_fedprune.sim.loop.progress_line`). A
phase that runs minutes without finishing a round prints lines of its own, at most one
every ``INTERVAL_S`` seconds (``output.progress``):

- exploration (AutoFLIP): one line per explorer rank 0 finishes, and one per epoch of a
  long explorer, with the phase's ETA from rank 0's share of the explorers;
- a round: the clients rank 0 has trained so far and the round's ETA from its share.

Rank 0 only sees its own clients: the schedule balances the ranks by client size, so its
share is a fair sample of the whole. Nothing here is collective, and nothing changes a
result.
"""

from __future__ import annotations

import time
from collections.abc import Callable

INTERVAL_S = 10.0  # at most one line per phase this often (a line per explorer excepted)


def duration_text(seconds: float) -> str:
    """``42 s``, ``12 min``, ``3.5 h``: a duration for a progress line."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


class Ticker:
    """Says when a throttled line is due: first after ``interval`` s, then every ``interval``."""

    def __init__(self, interval: float = INTERVAL_S, clock: Callable[[], float] = time.monotonic):
        self.interval = interval
        self.clock = clock
        self.last = clock()

    def due(self) -> bool:
        now = self.clock()
        if now - self.last < self.interval:
            return False
        self.last = now
        return True


class RoundProgress:
    """Rank 0's line inside a long round: clients trained so far, and the round's ETA.

    Parameters
    ----------
    rnd, rounds : int
        The round and the run's last round.
    clients : int
        The clients rank 0 trains this round.
    enabled : bool
        Rank 0 with ``output.progress`` on; otherwise every call does nothing.
    """

    def __init__(self, rnd: int, rounds: int, clients: int, enabled: bool, *, clock=time.monotonic):
        self.rnd, self.rounds, self.clients = rnd, rounds, clients
        self.enabled = enabled
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.ticker = Ticker(clock=clock)

    def client_done(self, count: int = 1) -> str | None:
        """Count ``count`` trained clients; print (and return) a line when one is due."""
        self.done += count
        if not self.enabled or self.done >= self.clients or not self.ticker.due():
            return None
        elapsed = self.clock() - self.start
        eta = elapsed / self.done * (self.clients - self.done)
        line = (
            f"round {self.rnd}/{self.rounds}: {self.done}/{self.clients} clients of rank 0 "
            f"trained, {elapsed / self.done:.1f} s per client, round ETA {duration_text(eta)}"
        )
        print(line, flush=True)
        return line


class ExplorationProgress:
    """Rank 0's lines during the exploration phase.

    Parameters
    ----------
    total : int
        Explorers of the phase.
    saved : int
        Explorers finished before this process started (a resumed phase).
    mine : int
        Explorers rank 0 trains in this process.
    ranks : int
        Ranks sharing the explorers.
    max_epochs : int
        Exploration epochs an explorer runs at most.
    enabled : bool
        Rank 0 with ``output.progress`` on; otherwise every call does nothing.
    """

    def __init__(self, total, saved, mine, ranks, max_epochs, enabled, *, clock=time.monotonic):
        self.total, self.saved, self.mine, self.ranks = total, saved, mine, ranks
        self.max_epochs = max_epochs
        self.enabled = enabled
        self.clock = clock
        self.start = clock()
        self.done = 0
        self.ticker = Ticker(clock=clock)
        self.explorer_start = self.start

    def begin(self) -> str | None:
        """The phase's first line: how much there is to do."""
        if not self.enabled:
            return None
        resumed = f", {self.saved} saved earlier" if self.saved else ""
        line = (
            f"exploration: {self.total} explorers{resumed}, up to {self.max_epochs} epochs "
            f"each, on {self.ranks} rank(s); rank 0 trains {self.mine}"
        )
        print(line, flush=True)
        return line

    def begin_explorer(self) -> None:
        self.explorer_start = self.clock()

    def epoch_done(self, client: int, epoch: int) -> str | None:
        """After each epoch of rank 0's explorer: a line when one is due (slow explorers)."""
        if not self.enabled or not self.ticker.due():
            return None
        spent = self.clock() - self.explorer_start
        line = (
            f"exploration: client {client} epoch {epoch}/{self.max_epochs} "
            f"({spent / max(epoch, 1):.1f} s per epoch), explorer {self.done + 1}/{self.mine} "
            f"of rank 0{self._eta()}"
        )
        print(line, flush=True)
        return line

    def explorer_done(self, client: int, epochs: int) -> str | None:
        """After each explorer rank 0 finishes: one line with the phase's ETA."""
        self.done += 1
        if not self.enabled:
            return None
        self.ticker.last = self.clock()  # an epoch line right after this one says nothing new
        elapsed = self.clock() - self.start
        line = (
            f"exploration: explorer {self.done}/{self.mine} of rank 0 done (client {client}, "
            f"{epochs} epochs), {elapsed / self.done:.1f} s per explorer{self._eta()}"
        )
        print(line, flush=True)
        return line

    def _eta(self) -> str:
        if not self.done:
            return ""
        elapsed = self.clock() - self.start
        return f", ETA {duration_text(elapsed / self.done * (self.mine - self.done))}"
