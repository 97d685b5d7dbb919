"""The command line: ``run`` (default), ``config show|keys``, ``analyze``, ``compare``, ``privacy``.

Exit status: 0 success, 2 bad input (config, files, arguments), 1 internal failure, 74 the
run directory could not be written (disk full, quota, file-size limit), 75 stopped by a
signal after a checkpoint, 130 stopped at once by a second Ctrl-C. Under MPI an input
error is reported once, by rank 0, and every rank exits with 2; an internal failure on any
rank aborts the whole job instead of leaving it hanging.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from pathlib import Path

import numpy as np

from .errors import (
    EXIT_INPUT,
    EXIT_INTERNAL,
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_STORAGE,
    InputError,
    StorageError,
)

DESCRIPTION = "MPI simulator of federated learning with model pruning."


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (exit 2, one line) instead of printing usage twice."""

    def error(self, message: str):  # noqa: D401
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hpc_fedprune", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run one experiment (default: the built-in quick start)",
        description="Run one experiment on all MPI ranks.",
    )
    run.add_argument("--config", help="YAML config file (default: the quick start)")
    run.add_argument("--out", help="run directory (default: runs/<name>-<timestamp>)")
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint (its own config)",
    )
    run.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")

    cfg = sub.add_parser(
        "config",
        help="show the resolved config or list every key",
        description="Inspect configuration.",
    )
    cfg_sub = cfg.add_subparsers(dest="config_command", parser_class=_Parser)
    show = cfg_sub.add_parser("show", help="print the fully resolved config (all defaults)")
    show.add_argument("--config", help="YAML config file")
    show.add_argument("overrides", nargs="*", metavar="key.sub=value")
    keys = cfg_sub.add_parser("keys", help="list every config key with its default and meaning")
    keys.add_argument("--markdown", action="store_true", help="as a Markdown table (README)")

    analyze = sub.add_parser(
        "analyze",
        help="summarise a run and write tables and plots",
        description="Offline analysis of one run.",
    )
    analyze.add_argument("run", help="run directory or its run.h5")
    analyze.add_argument("--out", help="output folder (default: <run>/analysis)")

    compare = sub.add_parser(
        "compare",
        help="compare several runs: one table, overlaid plots",
        description="Compare runs.",
    )
    compare.add_argument("runs", nargs="+", help="run directories or run.h5 files")
    compare.add_argument("--out", help="output folder (default: ./compare)")

    privacy = sub.add_parser(
        "privacy",
        help="membership-inference attacks on a finished run's saved model",
        description="Attack the final model of a run made with privacy.enabled (no retraining).",
    )
    privacy.add_argument("run", help="run directory or its run.h5")
    privacy.add_argument("--out", help="HDF5 file for the /privacy rows (default: RUN/privacy.h5)")
    privacy.add_argument(
        "overrides",
        nargs="*",
        metavar="privacy.key=value",
        help="attack-setting overrides (before --out)",
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    try:
        args = build_parser().parse_args(argv or ["run"])
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    except SystemExit as exc:  # --help
        return int(exc.code or 0)
    if args.command in (None, "run"):
        if args.command is None:
            args = build_parser().parse_args(["run"])
        return command_run(args)
    if args.command == "privacy":
        return command_run(args, body=_privacy)
    try:
        if args.command == "config":
            return command_config(args)
        if args.command == "analyze":
            from .analysis import run_analyze

            return run_analyze(args.run, args.out)
        if args.command == "compare":
            from .analysis import run_compare

            return run_compare(args.runs, args.out)
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


def command_config(args) -> int:
    from .config import describe_keys, load_config, to_yaml

    if args.config_command == "keys":
        rows = describe_keys()
        if args.markdown:
            print("| key | default | meaning |\n|---|---|---|")
            for key, default, text in rows:
                print(f"| `{key}` | `{default!r}` | {text.replace('|', '/')} |")
            return EXIT_OK
        for key, default, text in rows:
            print(f"{key} = {default!r}\n    {text}")
        return EXIT_OK
    if args.config_command in (None, "show"):
        config = load_config(getattr(args, "config", None), getattr(args, "overrides", []))
        print(to_yaml(config), end="")
        return EXIT_OK
    return EXIT_OK


def command_run(args, body=None) -> int:
    """Run an experiment (or another collective ``body``) on every rank of MPI.COMM_WORLD."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
    if hasattr(signal, "SIGXFSZ"):
        # A file-size limit (ulimit -f) then fails the write with EFBIG, which the run
        # directory reports in one line, instead of killing the process.
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    from .comm.world import World

    world = World.from_mpi()
    try:
        code = (body or _run)(args, world)
    except InputError as exc:
        if world.is_root:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_INPUT
    except StorageError as exc:
        # Raised on rank 0 while the others may wait in a collective: end the job.
        print(f"error: {exc}", file=sys.stderr, flush=True)
        return _end_job(world, EXIT_STORAGE)
    except KeyboardInterrupt:
        # Ctrl-C before the stop handler is installed, or a second one (in a process of
        # its own: mpiexec kills the ranks itself on a second Ctrl-C).
        if world.is_root:
            print(
                "interrupted at once (Ctrl-C): the round in progress is not recorded; "
                "run --resume continues from the newest checkpoint",
                file=sys.stderr,
                flush=True,
            )
        return _end_job(world, EXIT_INTERRUPTED)
    except Exception as exc:  # noqa: BLE001 - any failure must end every rank
        world.abort_on_exception(exc)
        return EXIT_INTERNAL
    if code != EXIT_OK:
        # Every rank gets here together (input errors and stops are agreed collectively).
        # Finalising now keeps `python -m mpi4py` from turning the status into an abort,
        # so a job script sees 2 or 75, not a kill.
        world.finalize()
    return code


def _end_job(world, code: int) -> int:
    """Leave with ``code`` from a rank that cannot count on the others reaching this point."""
    if world.size > 1:
        sys.stderr.flush()
        time.sleep(0.5)  # let the launcher forward the message before the abort
        world.comm.Abort(code)
    return code


def _run(args, world) -> int:
    from .comm.world import check_launch
    from .preflight import plan_run

    # Stage 1: the command line, the config and the paths, before anything heavy.
    error = plan = None
    try:
        check_launch(world)
        plan = plan_run(args, is_root=world.is_root)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    config = plan.config
    out_dir = Path(world.bcast_object(str(plan.out_dir)))  # rank 0's (a time stamp)

    # Stage 2: torch, the device, the resume point, and the set-up (names are checked
    # against the data sets, models and methods installed).
    from .comm.world import limit_threads, pick_device
    from .sim.loop import run_rounds
    from .sim.setup import build_setup
    from .sim.signals import EXIT_REQUEUE, StopFlag
    from .store.rundir import RunDir

    rundir = RunDir(out_dir)
    error = setup = checkpoint = device = None
    finished = False
    try:
        limit_threads(config.runtime.threads)
        device = pick_device(config.runtime.device, world.local_rank)
        if world.is_root and plan.resume:
            checkpoint, finished = rundir.resume(world.size)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    if world.bcast_object(finished):
        if world.is_root:
            print(f"{out_dir} holds a finished run; nothing to resume", flush=True)
        return EXIT_OK
    try:
        setup = build_setup(config, world.size, device)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    if world.is_root:
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
            f"{sizes.max()} (min-median-max), label skew {float(setup.stats['label_tv_mean']):.3f} "
            "(mean total-variation distance to the global label mix)",
            flush=True,
        )
    # Rank 0 records a stop at once: if the job is then killed before the round ends (a
    # second Ctrl-C makes mpiexec kill every rank), the run file still says interrupted.
    on_stop = (lambda: rundir.mark("interrupted")) if world.is_root else None
    stop = StopFlag(on_first=on_stop).install()
    try:
        result = run_rounds(config, world, setup, out_dir, resume=checkpoint, stop=stop)
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
    if world.is_root:
        if not result.stopped:
            print(rundir.summary_line(), flush=True)
        print(f"run file: {result.out_dir / 'run.h5'}", flush=True)
    return EXIT_REQUEUE if result.stopped else EXIT_OK


def _privacy(args, world) -> int:
    """``privacy RUN``: attack a run's saved model on every rank; rank 0 prints the rows."""
    from .comm.world import limit_threads, pick_device
    from .privacy.command import evaluate_saved_run

    def device_of(config):
        limit_threads(config.runtime.threads)
        return pick_device(config.runtime.device, world.local_rank)

    out, rows = evaluate_saved_run(world, args.run, args.out, args.overrides, device_of)
    if world.is_root:
        for r in rows:
            print(
                f"round {r['round']}  {r['attack']:<9}  AUC {r['auc']:.4f}  "
                f"advantage {r['advantage']:.4f}  ({r['members']} members, "
                f"{r['nonmembers']} non-members)",
                flush=True,
            )
        print(f"privacy file: {out}", flush=True)
    return EXIT_OK
