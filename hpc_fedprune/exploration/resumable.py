"""The exploration phase as the round loop runs it: saved, stoppable and resumable.

An exploration can take an hour (20 explorers x 150 epochs). Rank 0 continues from the
explorers a stopped run saved in its directory, saves them again when the phase ends
(stopped or complete, so that a run killed in its first rounds does not explore again)
and writes ``/exploration`` once the phase is complete. Meanwhile it refreshes the run
file's heartbeat, so that ``analyze`` does not take a long phase for a crashed run. A
stop signal ends the phase after the step in progress; the run then exits like a run
stopped after a round (status ``interrupted``, exit 75) and ``run --resume DIR`` trains
only the explorers left.
"""

from __future__ import annotations

import torch

from ..comm.world import World
from ..config import Config
from ..sim.progress import Ticker
from ..training.local import LocalTrainer
from .phase import Exploration, run_exploration

HEARTBEAT_S = 60.0  # analyze calls a run without a heartbeat for 10 minutes crashed


def explore(
    config: Config,
    world: World,
    setup,
    trainer: LocalTrainer,
    start: torch.Tensor,
    rundir,
    stop=None,
) -> Exploration:
    """Run (or continue) the exploration phase; collective. Rank 0 saves and records it.

    Parameters
    ----------
    config, world, setup, trainer, start
        As for `run_exploration`.
    rundir : RunDir or None
        Rank 0's run directory (created); None on the other ranks.
    stop : StopFlag, optional
        The run's stop flag. While the phase runs, a stop is announced as ending the
        exploration step in progress.

    Returns
    -------
    Exploration
        ``stopped`` on every rank when a stop signal ended the phase (its state saved).
    """
    saved = rundir.saved_exploration() if world.is_root else None
    alive = None
    if world.is_root:  # the run file's heartbeat, at most once a minute: the run is alive
        ticker = Ticker(HEARTBEAT_S)
        alive = lambda: ticker.due() and rundir.beat()  # noqa: E731
    previous = None
    if stop is not None:
        previous, stop.after = stop.after, "the exploration step in progress"
    try:
        exploration = run_exploration(
            config, world, setup, trainer, start, stop=stop, saved=saved, alive=alive
        )
    finally:
        if stop is not None:
            stop.after = previous
    if world.is_root:
        rundir.save_exploration(exploration.state)
        if exploration.scores is not None:
            rundir.write_exploration(setup.algorithm.exploration_record(exploration))
        if exploration.stopped:
            state = exploration.state
            rundir.mark("interrupted")
            print(
                f"stopped by signal during the exploration phase; {len(state.clients)} of "
                f"{len(state.explorers)} explorers saved, resume with: "
                f"python -m hpc_fedprune run --resume {rundir.path}",
                flush=True,
            )
    return exploration
