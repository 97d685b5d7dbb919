"""The Python API: run an experiment from a script or a notebook, in this process.

>>> import hpc_fedprune
>>> outcome = hpc_fedprune.run("configs/fedavg_fmnist_lenet5.yaml",
...                            overrides=["federation.rounds=5"])      # doctest: +SKIP
>>> outcome.metrics["test_accuracy"], outcome.path                   # doctest: +SKIP
>>> outcome.load().to_pandas()                                       # doctest: +SKIP

`run` is what ``python -m hpc_fedprune run`` does, and the command line is a thin layer
over it (`run_request`): the same checks, the same messages on rank 0, the same run
directory bit for bit. Where the command line prints an error and exits, the API raises:
`InputError` for bad input (on every rank alike), `StorageError` when the run directory
cannot be written. A run happens in two stages:

1. `check_request` (every rank, before torch is imported): the config source and the
   paths; the ranks agree on the first error.
2. `execute` (every rank): torch, the device, the resume point, the set-up, the rounds.

This module imports neither torch nor mpi4py when it is imported: both come in when a run
starts.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from .errors import InputError
from .preflight import RUN_FILE, RunPlan, plan_run

if TYPE_CHECKING:  # only for annotations: importing them would import mpi4py or h5py
    from .analysis.runfile import Run
    from .comm.world import World
    from .config import Config


@dataclass(frozen=True)
class RunRequest:
    """What a run is asked to do: the command line's ``run`` arguments, as values.

    Attributes
    ----------
    config : str, Path, mapping, Config or None
        The config source (see `load_config`); None: every key at its default.
    out : str, Path or None
        The run directory; None: ``output.dir``, else ``runs/<output.name>-<timestamp>``.
    overrides : tuple of str
        ``key.sub=value`` strings applied on top of ``config``.
    resume : str, Path or None
        A run directory to continue from its newest checkpoint (with its own config: then
        ``config``, ``out`` and ``overrides`` must be left out).
    plugins : tuple of str
        Plug-ins to import before the config is checked (module names or ``.py`` paths,
        as ``--plugin``), besides those the config names.
    """

    config: Any = None
    out: str | Path | None = None
    overrides: tuple[str, ...] = field(default_factory=tuple)
    resume: str | Path | None = None
    plugins: tuple[str, ...] = field(default_factory=tuple)

    @classmethod
    def from_args(cls, args) -> RunRequest:
        """The request of a parsed ``run`` command line."""
        plugins = tuple(getattr(args, "plugins", None) or ())
        return cls(args.config, args.out, tuple(args.overrides), args.resume, plugins)


@dataclass(frozen=True)
class RunOutcome:
    """What a run gives back (the same on every rank).

    Attributes
    ----------
    path : pathlib.Path
        The run directory (``run.h5``, ``config.yaml``, ``metrics.jsonl``, checkpoints).
    rounds : int
        The last completed round.
    metrics : dict of str to float
        That round's row of ``/metrics`` (``test_accuracy``, ``sparsity``, ``bytes_up``, ...;
        empty when no round completed).
    stopped : bool
        A stop signal (SIGTERM, SIGUSR1, Ctrl-C) ended the run after ``rounds``, with a
        checkpoint: ``run(resume=outcome.path)`` continues it.
    """

    path: Path
    rounds: int
    metrics: dict[str, float]
    stopped: bool = False

    @property
    def run_file(self) -> Path:
        """The run's ``run.h5``."""
        return self.path / RUN_FILE

    def load(self) -> Run:
        """The run file read by `hpc_fedprune.analysis.load_run` (metrics as columns)."""
        from .analysis.runfile import load_run

        return load_run(self.run_file)


def run(
    config: str | Path | Mapping[str, Any] | Config | None = None,
    out: str | Path | None = None,
    overrides: Sequence[str] = (),
    *,
    resume: str | Path | None = None,
    plugins: Sequence[str] = (),
    comm=None,
) -> RunOutcome:
    """Run one experiment in this process (on every rank of ``comm``); return its outcome.

    Parameters
    ----------
    config : str, Path, mapping, Config or None
        A YAML file, the same tree as a mapping (``{"federation": {"rounds": 3}}``), a
        `Config`, or None for the quick start. Checked like the command line's
        ``--config``.
    out : str or Path, optional
        The run directory, which must not hold a run yet (``--out``). Default:
        ``output.dir``, else ``runs/<output.name>-<timestamp>`` under the working folder.
    overrides : sequence of str
        ``key.sub=value`` strings, as on the command line.
    resume : str or Path, optional
        Continue the run in this directory from its newest checkpoint (``--resume``); it
        takes the run's own config, so ``config``, ``out`` and ``overrides`` stay unset.
        A run that finished is left as it is and its outcome returned.
    plugins : sequence of str
        Plug-ins (module names or ``.py`` files) to import before the config is checked,
        besides the config's own ``plugins`` (see "Writing your own method").
    comm : mpi4py.MPI.Comm, optional
        The ranks that run the experiment together. Default: ``MPI.COMM_WORLD``, which in
        a process not started by mpiexec is this process alone. Under mpiexec every rank
        of ``comm`` must call `run` with the same arguments.

    Returns
    -------
    RunOutcome
        The run directory, the last round, its metrics, whether a signal stopped it.

    Raises
    ------
    InputError
        Bad input (config key or value, paths, an existing run in ``out``), raised on every
        rank before anything is written, with the one-line message the command line prints.
    StorageError
        The run directory could not be written (every completed round stays readable).
        Raised on rank 0 only: under mpiexec, run the script with ``python -m mpi4py`` so
        that an exception on one rank ends them all.

    Notes
    -----
    Called from the main thread, `run` handles SIGTERM, SIGUSR1 and SIGINT (Ctrl-C, a
    notebook's "interrupt") as the command line does: the round in progress finishes, a
    checkpoint is written, and the outcome says ``stopped``; a second Ctrl-C raises
    KeyboardInterrupt at once. From another thread no handler is installed.
    """
    if isinstance(overrides, (str, bytes)):
        raise InputError(
            f"overrides: expected a list of 'key.sub=value' strings, got {overrides!r}"
        )
    from .comm.world import World

    world = World.from_mpi() if comm is None else World(comm)
    request = RunRequest(config, out, tuple(overrides), resume, tuple(plugins))
    return run_request(request, world)


def run_request(request: RunRequest, world: World) -> RunOutcome:
    """Both stages of a run on every rank of ``world`` (the command line's ``run``)."""
    return execute(check_request(request, world), world)


def check_request(request: RunRequest, world: World) -> RunPlan:
    """Stage 1 (collective): the request's config source, checked before anything heavy.

    This is the one place where a config source becomes a validated `Config`: whatever
    decides which names a config may use (methods, data sets, models added from outside
    the package) must be in place before `plan_run` is called here. Rank 0 also checks
    the run directory; every rank raises the first InputError any rank found.

    Returns
    -------
    RunPlan
        The config, rank 0's run directory (its default carries rank 0's time stamp), and
        whether the run resumes.
    """
    from .comm.world import check_launch

    error = plan = None
    try:
        check_launch(world)
        plan = plan_run(request, is_root=world.is_root)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    return replace(plan, out_dir=Path(world.bcast_object(str(plan.out_dir))))


def execute(plan: RunPlan, world: World) -> RunOutcome:
    """Stage 2 (collective): torch, the device, the resume point, the set-up, the rounds.

    Rank 0 prints what is run, the progress, and the end line; the run directory is
    marked ``interrupted`` or ``failed`` when the rounds end by an exception.
    """
    from .comm.world import limit_threads, pick_device
    from .sim.setup import build_setup
    from .store.rundir import RunDir

    config, out_dir = plan.config, plan.out_dir
    rundir = RunDir(out_dir)
    error = checkpoint = device = None
    finished = False
    try:
        limit_threads(config.runtime.threads)
        world.set_waiting(config.runtime.wait)
        device = pick_device(config.runtime.device, world.local_rank)
        if world.is_root and plan.resume:
            checkpoint, finished = rundir.resume(world.size)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    if world.bcast_object(finished):
        if world.is_root:
            print(f"{out_dir} holds a finished run; nothing to resume", flush=True)
        return _finished_outcome(out_dir, world)
    setup = error = None
    try:  # collective where the node's ranks share one copy of the data set
        setup = build_setup(config, world.size, device, world=world)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    if world.is_root:
        _announce(config, setup, world)
    result = _rounds(config, world, setup, rundir, checkpoint)
    setup.release()
    if world.is_root:
        if not result.stopped:
            print(rundir.summary_line(), flush=True)
        print(f"run file: {result.out_dir / RUN_FILE}", flush=True)
    # The metrics are rank 0's: every rank returns the same outcome.
    rounds, metrics = world.bcast_object((result.rounds, _plain_row(result.metrics)))
    return RunOutcome(out_dir, rounds, metrics, stopped=result.stopped)


def _rounds(config, world, setup, rundir, checkpoint):
    """`run_rounds` with the stop signals handled (main thread only), the status kept."""
    from .sim.loop import run_rounds
    from .sim.signals import StopFlag

    # Rank 0 records a stop at once: if the job is then killed before the round ends (a
    # second Ctrl-C makes mpiexec kill every rank), the run file still says interrupted.
    # It also says at once, in one line, what the run finishes before it stops.
    on_stop = (lambda: (rundir.mark("interrupted"), stop.announce())) if world.is_root else None
    stop = StopFlag(on_first=on_stop)
    if threading.current_thread() is threading.main_thread():
        stop.install()  # Python lets only the main thread set signal handlers
    try:
        return run_rounds(config, world, setup, rundir.path, resume=checkpoint, stop=stop)
    except KeyboardInterrupt:
        if world.is_root:
            rundir.mark("interrupted")
        raise
    except Exception:
        if world.is_root:
            rundir.mark("failed")
        raise
    finally:
        stop.restore()


def _announce(config, setup, world) -> None:
    """Rank 0's lines before round 1: what runs where, the partition, the data's home."""
    from .data.partition import describe_skew
    from .sim.setup import idle_ranks

    print(
        f"hpc_fedprune: {config.algorithm.name} on {setup.dataset.name} "
        f"({config.partition.num_clients} clients, {setup.cohort_size} per round, "
        f"{config.federation.rounds} rounds) on {world.size} rank(s), device {setup.device}",
        flush=True,
    )
    sizes = setup.sizes
    print(
        f"partition: {config.partition.scheme}, client sizes "
        f"{sizes.min()}-{int(np.median(sizes))}-"
        f"{sizes.max()} (min-median-max), {describe_skew(setup.stats)}",
        flush=True,
    )
    if setup.shared is not None:
        print(
            f"data set: one copy per node in shared memory, read by its "
            f"{setup.shared.local_size} rank(s) on this node",
            flush=True,
        )
    idle = idle_ranks(config, world.size)
    if idle:
        print(
            f"{idle} of {world.size} ranks idle: {setup.cohort_size} clients per round, "
            "one rank each at most; idle ranks only take part in the collectives",
            flush=True,
        )


def _finished_outcome(out_dir: Path, world: World) -> RunOutcome:
    """The outcome of a run that had finished before (read by rank 0, sent to all)."""
    row: tuple[int, dict[str, float]] | None = None
    if world.is_root:
        from .analysis.runfile import load_run

        run_file = load_run(out_dir / RUN_FILE)
        row = (run_file.rounds_done, run_file.row(-1) if run_file.num_rounds else {})
    rounds, metrics = world.bcast_object(row)
    return RunOutcome(out_dir, rounds, metrics)


def _plain_row(metrics: dict) -> dict[str, float]:
    """A metrics row with numpy scalars turned into Python numbers (same values)."""
    return {k: v.item() if isinstance(v, np.generic) else v for k, v in metrics.items()}
