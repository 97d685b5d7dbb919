"""The command line: ``run`` (default), ``config show|keys``, ``analyze``, ``compare``.

Exit status: 0 success, 2 bad input (config, files, arguments), 1 internal failure.
Under MPI an input error is reported once, by rank 0, and every rank exits with 2; an
internal failure on any rank aborts the whole job instead of leaving it hanging.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import os
import sys
from pathlib import Path

from .errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, InputError

DESCRIPTION = "MPI simulator of federated learning with model pruning."


class _Parser(argparse.ArgumentParser):
    """argparse that raises InputError (exit 2, one line) instead of printing usage twice."""

    def error(self, message: str):  # noqa: D401
        raise InputError(f"{self.prog}: {message}")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python -m hpc_fedprune", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser("run", help="run one experiment (default: the built-in quick start)",
                         description="Run one experiment on all MPI ranks.")
    run.add_argument("--config", help="YAML config file (default: the quick start)")
    run.add_argument("--out", help="run directory (default: runs/<name>-<timestamp>)")
    run.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")

    cfg = sub.add_parser("config", help="show the resolved config or list every key",
                         description="Inspect configuration.")
    cfg_sub = cfg.add_subparsers(dest="config_command", parser_class=_Parser)
    show = cfg_sub.add_parser("show", help="print the fully resolved config (all defaults)")
    show.add_argument("--config", help="YAML config file")
    show.add_argument("overrides", nargs="*", metavar="key.sub=value")
    cfg_sub.add_parser("keys", help="list every config key with its default and meaning")

    analyze = sub.add_parser("analyze", help="summarise a run and write tables and plots",
                             description="Offline analysis of one run.")
    analyze.add_argument("run", help="run directory or its run.h5")
    analyze.add_argument("--out", help="output folder (default: <run>/analysis)")

    compare = sub.add_parser("compare", help="compare several runs: one table, overlaid plots",
                             description="Compare runs.")
    compare.add_argument("runs", nargs="+", help="run directories or run.h5 files")
    compare.add_argument("--out", help="output folder (default: ./compare)")
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
        for key, default, text in describe_keys():
            print(f"{key} = {default!r}\n    {text}")
        return EXIT_OK
    if args.config_command in (None, "show"):
        config = load_config(getattr(args, "config", None), getattr(args, "overrides", []))
        print(to_yaml(config), end="")
        return EXIT_OK
    return EXIT_OK


def default_out_dir(name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def command_run(args) -> int:
    """Run an experiment on every rank of MPI.COMM_WORLD."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
    from .comm.world import World

    world = World.from_mpi()
    try:
        return _run(args, world)
    except InputError as exc:
        if world.is_root:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        return EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - any failure must end every rank
        world.abort_on_exception(exc)
        return EXIT_INTERNAL


def _run(args, world) -> int:
    from .comm.world import limit_threads, pick_device
    from .config import load_config
    from .sim.loop import run_rounds
    from .sim.setup import build_setup

    error = None
    setup = out_dir = config = None
    try:
        config = load_config(args.config, args.overrides)
        limit_threads(config.runtime.threads)
        device = pick_device(config.runtime.device, world.local_rank)
        out_dir = Path(args.out) if args.out else Path(config.output.dir or default_out_dir(config.output.name))
        if world.is_root:
            check_out_dir(out_dir)
        setup = build_setup(config, world.size, device)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    out_dir = Path(world.bcast_object(str(out_dir)))
    if world.is_root:
        print(f"hpc_fedprune: {config.algorithm.name} on {setup.dataset.name} "
              f"({config.partition.num_clients} clients, {setup.cohort_size} per round, "
              f"{config.federation.rounds} rounds) on {world.size} rank(s), device {setup.device}",
              flush=True)
    try:
        result = run_rounds(config, world, setup, out_dir)
    except Exception:
        if world.is_root and (out_dir / "run.h5").exists():
            mark_failed(out_dir)
        raise
    if world.is_root:
        print(f"run file: {result.out_dir / 'run.h5'}", flush=True)
    return EXIT_OK


def check_out_dir(out_dir: Path) -> None:
    """Refuse to overwrite a run: a run directory holds exactly one experiment."""
    if (out_dir / "run.h5").exists():
        raise InputError(f"{out_dir} already holds a run (run.h5); choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"--out {out_dir} exists and is not a directory")


def mark_failed(out_dir: Path) -> None:
    try:
        from .store import RunFile

        RunFile(out_dir / "run.h5").set_attrs(status="failed")
    except Exception:  # noqa: BLE001 - best effort while already failing
        pass
