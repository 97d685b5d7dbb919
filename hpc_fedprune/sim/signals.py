"""Graceful stop on SIGTERM, SIGUSR1 (Slurm's warnings before a time limit or preemption)
and SIGINT (a person at a terminal): finish the round, checkpoint, exit with 75.

A handler only sets a flag; the loop asks all ranks at the end of every round whether
any of them was signalled (one small allreduce), so every rank stops after the same
round even when the signal reached only some of them.
"""

from __future__ import annotations

import signal

EXIT_REQUEUE = 75  # EX_TEMPFAIL: "try again later"; the job scripts requeue on it

STOP_SIGNALS = (signal.SIGTERM, signal.SIGUSR1, signal.SIGINT)


class StopFlag:
    """Set by a stop signal; installed for the duration of a run."""

    def __init__(self) -> None:
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def _handle(self, signum, frame) -> None:
        if self.signum is not None and signum == signal.SIGINT:
            raise KeyboardInterrupt  # a second Ctrl-C stops at once
        self.signum = signum

    def install(self) -> StopFlag:
        for sig in STOP_SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    @property
    def raised(self) -> bool:
        return self.signum is not None
