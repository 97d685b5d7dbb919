"""Fault injection for the failure tests.

``HPC_FEDPRUNE_FAULT=rank=1,round=2[,point=P][,action=A]``.

The program calls `maybe_fail(point, rank, round)` at a few named points (``train``: after
a client's local training; ``reduce``: before the round's collective; ``write``: on rank
0 before the round is written; ``history``: in the middle of writing a round to run.h5;
``checkpoint``: after the new checkpoint file is written, before it replaces the old;
``explore``: after the base epoch of a rank's explorer, ``round`` counting its explorers).
``action=raise`` (default) raises an exception, as a bug would; ``action=kill`` sends
SIGKILL to the process, as an out-of-memory kill or a node failure would; ``action=term``
sends SIGTERM, as Slurm does before a time limit; ``action=sleep`` waits ``seconds`` (default
30), a round that takes long, for tests that signal a run in the middle of one. Unset (the
normal case) it costs one ``None`` check per call.
"""

from __future__ import annotations

import os
import signal
import time

_SPEC = os.environ.get("HPC_FEDPRUNE_FAULT")


def _parse(text: str | None) -> dict[str, str] | None:
    if not text:
        return None
    return dict(item.split("=", 1) for item in text.split(",") if "=" in item)


FAULT = _parse(_SPEC)


def maybe_fail(point: str, rank: int, round_index: int) -> None:
    """Fail here if the environment asks for a fault at this (point, rank, round)."""
    if FAULT is None:
        return
    if FAULT.get("point", "train") != point:
        return
    if int(FAULT.get("rank", 0)) != rank or int(FAULT.get("round", 1)) != round_index:
        return
    action = FAULT.get("action", "raise")
    if action == "kill":
        os.kill(os.getpid(), signal.SIGKILL)
    if action == "term":
        os.kill(os.getpid(), signal.SIGTERM)
        return
    if action == "sleep":
        time.sleep(float(FAULT.get("seconds", 30)))
        return
    raise RuntimeError(
        f"injected fault (HPC_FEDPRUNE_FAULT) at {point}, rank {rank}, round {round_index}"
    )
