"""Graceful stop on SIGTERM, SIGUSR1 (Slurm's warnings before a time limit or preemption)
and SIGINT (a person at a terminal): finish the round, checkpoint, exit with 75.

A handler only sets a flag (and calls ``on_first`` once: rank 0 marks the run file
``interrupted`` at once, in case the job is killed before the round ends, and says in one
line that the run stops after this round, or after the exploration step in progress); the loop asks
all ranks at the end of every round whether any of them was signalled (one small
allreduce), so every rank stops after the same round even when the signal reached only
some of them.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable

EXIT_REQUEUE = 75  # EX_TEMPFAIL: "try again later"; the job scripts requeue on it

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopFlag:
    """Set by a stop signal; installed for the duration of a run.

    Parameters
    ----------
    on_first : callable, optional
        Called (no arguments) when the first stop signal arrives, from the handler.
    """

    def __init__(self, on_first: Callable[[], object] | None = None) -> None:
        self.signum: int | None = None
        # What the run finishes before it stops (a phase other than a round sets its own).
        self.after = "this round"
        self._on_first = on_first
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None:
            if signum == signal.SIGINT:
                raise KeyboardInterrupt  # a second Ctrl-C stops at once
            return
        self.signum = signum
        if self._on_first is not None:
            self._on_first()

    def install(self) -> StopFlag:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def announce(self) -> str:
        """Write (and return) the one line that acknowledges the stop, at once.

        Called from the handler, which may interrupt a ``print``: the line goes straight
        to the standard output's file descriptor, past Python's buffers.
        """
        name = signal.Signals(self.signum).name if self.signum is not None else "stop"
        line = f"{name} received: stopping after {self.after} (checkpoint, then exit 75)\n"
        try:
            os.write(sys.stdout.fileno(), line.encode())
        except (OSError, ValueError, AttributeError):  # no descriptor (captured output)
            pass
        return line.rstrip("\n")

    @property
    def raised(self) -> bool:
        return self.signum is not None
