"""Optional TensorBoard logging: each round's metrics as scalars, written by rank 0.

With ``output.tensorboard: true`` the round loop hands every round's metrics (the row it
has just appended to ``/metrics``) to `log_round`, which writes them to an event file in
``RUN/tensorboard/`` (``tensorboard --logdir runs``). The run file stays the record; the
event file is a view for people who follow runs in TensorBoard. Only the ``tensorboard``
package is needed (the ``tensorboard`` extra), not torch's writer.

After a resume the first round written is past the checkpoint; a session-start event at
that step makes TensorBoard drop what the interrupted try wrote from there on, so every
round shows once.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping
from pathlib import Path

#: Folder of the event files, inside the run directory.
FOLDER = "tensorboard"

#: Install hint for the message of a missing package.
INSTALL = "pip install 'hpc_fedprune[tensorboard]'"


class ScalarLog:
    """An event file in ``out_dir/tensorboard`` that takes one round of scalars at a time.

    Parameters
    ----------
    out_dir : Path
        The run directory.
    first_round : int
        The first round this process writes; above 1 (a resume) rounds from it on that an
        earlier try wrote are discarded by TensorBoard.
    """

    def __init__(self, out_dir: Path, first_round: int = 1) -> None:
        from tensorboard.compat.proto.event_pb2 import Event, SessionLog
        from tensorboard.summary.writer.event_file_writer import EventFileWriter

        self.folder = Path(out_dir) / FOLDER
        self._writer = EventFileWriter(str(self.folder))
        if first_round > 1:
            start = SessionLog(status=SessionLog.START)
            self._writer.add_event(
                Event(wall_time=time.time(), step=first_round, session_log=start)
            )

    def write(self, rnd: int, metrics: Mapping[str, float]) -> None:
        """Write one round's metrics as scalars at step ``rnd`` and flush them to disk.

        ``round`` itself is the step; values that are not finite numbers (a round without
        evaluation has NaN accuracy) are left out, so that curves join evaluated rounds.
        """
        from tensorboard.compat.proto.event_pb2 import Event
        from tensorboard.compat.proto.summary_pb2 import Summary

        values = [
            Summary.Value(tag=name, simple_value=float(value))
            for name, value in metrics.items()
            if name != "round" and _finite_number(value)
        ]
        self._writer.add_event(
            Event(wall_time=time.time(), step=int(rnd), summary=Summary(value=values))
        )
        self._writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self._writer.close()


def _finite_number(value: object) -> bool:
    try:
        return math.isfinite(float(value))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return False


_open_logs: dict[Path, ScalarLog] = {}


def log_round(out_dir: Path, rnd: int, metrics: Mapping[str, float]) -> None:
    """Rank 0, after a round is written: its metrics to the run's TensorBoard event file.

    The event file is opened at the first call for a run directory and stays open for the
    rest of the process (one file per try); the first round seen decides whether this is a
    resume (see `ScalarLog`).
    """
    key = Path(out_dir).resolve()
    log = _open_logs.get(key)
    if log is None:
        log = _open_logs[key] = ScalarLog(key, first_round=rnd)
    log.write(rnd, metrics)


def close_logs() -> None:
    """Close every open event file (the end of a run; also safe when none is open)."""
    while _open_logs:
        _open_logs.popitem()[1].close()
