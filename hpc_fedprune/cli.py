"""The command line: ``run`` (default), ``config show|keys``, ``analyze``, ``compare``, ``privacy``.

Exit status: 0 success, 2 bad input (config, files, arguments), 1 internal failure, 74 the
run directory could not be written (disk full, quota, file-size limit), 75 stopped by a
signal after a checkpoint, 130 stopped at once by a second Ctrl-C. Under MPI an input
error is reported once, by rank 0, and every rank exits with 2; an internal failure on any
rank aborts the whole job instead of leaving it hanging.
"""

from __future__ import annotations

import argparse
import contextlib
import difflib
import os
import signal
import sys
import time

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


#: Attribute of a command's namespace naming the list that collects loose words
#: (``key=value`` overrides, run paths) wherever they stand between the options.
_LOOSE = "_loose_words"


def build_parser() -> argparse.ArgumentParser:
    """The command line's parser (parse with `parse_command_line`, which allows overrides
    anywhere)."""
    from . import __version__

    parser = _Parser(prog="python -m hpc_fedprune", description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"hpc_fedprune {__version__}")
    sub = parser.add_subparsers(dest="command", parser_class=_Parser)

    run = sub.add_parser(
        "run",
        help="run one experiment (default: the built-in quick start)",
        description="Run one experiment on all MPI ranks. Overrides may stand anywhere.",
    )
    run.add_argument("--config", help="YAML config file (default: the quick start)")
    run.add_argument("--out", help="run directory (default: runs/<name>-<timestamp>)")
    run.add_argument(
        "--resume",
        metavar="DIR",
        help="continue the run in DIR from its last checkpoint (its own config)",
    )
    _add_plugin_flag(run)
    run.add_argument("overrides", nargs="*", metavar="key.sub=value", help="config overrides")
    run.set_defaults(**{_LOOSE: "overrides"})

    cfg = sub.add_parser(
        "config",
        help="show the resolved config, list every key, or the shipped configs and job scripts",
        description="Inspect configuration; list and copy the shipped configs and job scripts.",
    )
    cfg_sub = cfg.add_subparsers(dest="config_command", parser_class=_Parser)
    show = cfg_sub.add_parser("show", help="print the fully resolved config (all defaults)")
    show.add_argument("--config", help="YAML config file")
    show.add_argument(
        "--used",
        action="store_true",
        help="only what the run reads: the chosen model's and method's options, the attack "
        "settings only with privacy.enabled",
    )
    _add_plugin_flag(show)
    show.add_argument("overrides", nargs="*", metavar="key.sub=value")
    show.set_defaults(**{_LOOSE: "overrides"})
    keys = cfg_sub.add_parser("keys", help="list every config key with its default and meaning")
    keys.add_argument("--markdown", action="store_true", help="as a Markdown table (README)")
    cfg_sub.add_parser(
        "list", help="the example configs and job scripts that ship with the package"
    )
    copy = cfg_sub.add_parser(
        "copy",
        help="copy shipped configs or job scripts into the working folder",
        description="Copy shipped files into ./configs/ and ./jobs/ (the repository's layout, "
        "so the README's commands work as written), or into --to DIR.",
    )
    copy.add_argument(
        "names",
        nargs="+",
        metavar="NAME",
        help="a config (fedavg_fmnist_lenet5 or its .yaml), a job script (run.sbatch), or a "
        "whole folder (configs, jobs)",
    )
    copy.add_argument("--to", metavar="DIR", help="put the files into DIR instead")
    copy.set_defaults(**{_LOOSE: "names"})

    from .analysis.cli import add_analyze_arguments, add_compare_arguments

    add_analyze_arguments(
        sub.add_parser(
            "analyze",
            help="summarise a run and write tables and plots",
            description="Offline analysis of one run.",
        )
    )
    compare = sub.add_parser(
        "compare",
        help="compare several runs: one table, overlaid plots",
        description="Compare runs. Runs whose configs differ only in runtime.seed form one "
        "group: mean and standard deviation over its seeds in the table, shaded bands in "
        "the plots.",
    )
    add_compare_arguments(compare)
    compare.set_defaults(**{_LOOSE: "runs"})

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
        help="attack-setting overrides",
    )
    privacy.set_defaults(**{_LOOSE: "overrides"})
    return parser


def _add_plugin_flag(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--plugin",
        dest="plugins",
        action="append",
        default=[],
        metavar="NAME_OR_PATH",
        help="import a plug-in (module name or .py file) before the config is checked; "
        "repeatable; recorded in the config's plugins",
    )


def parse_command_line(argv: list[str]) -> argparse.Namespace:
    """Parse ``argv``; loose words (``key=value`` overrides, run paths) may stand anywhere.

    argparse takes a command's positional words only in one block, so
    ``run --config X a.b=1 --out D c.d=2`` would leave ``c.d=2`` over. Whatever argparse
    leaves is added, in order, to the command's loose-word list; an unknown option (a
    misspelt one) stays an error.

    Raises
    ------
    InputError
        An unknown option, or a word the command takes nowhere.
    """
    parser = build_parser()
    args, left = parser.parse_known_args(argv)
    loose = getattr(args, _LOOSE, None)
    options = [w for w in left if w.startswith("-") and w != "-"]
    if options or (left and loose is None):
        command = [args.command, getattr(args, "config_command", None)]
        prog = " ".join([parser.prog, *(c for c in command if c)])
        words = options or left
        hint = _option_hint(parser, args, options)
        raise InputError(f"{prog}: unrecognized arguments: {' '.join(words)}{hint}")
    if loose is not None:
        setattr(args, loose, [*getattr(args, loose), *left])
    return args


def _option_hint(
    parser: argparse.ArgumentParser, args: argparse.Namespace, unknown: list[str]
) -> str:
    """``; did you mean --out?`` for a misspelt option of the command."""
    if not unknown:
        return ""
    # The innermost parser of the command given (``config show`` is two levels down).
    for name in (args.command, getattr(args, "config_command", None)):
        sub = _subcommands(parser).get(name) if name else None
        if sub is not None:
            parser = sub
    known = [s for a in parser._actions for s in a.option_strings]  # noqa: SLF001
    close = difflib.get_close_matches(unknown[0].split("=")[0], known, n=1)
    return f"; did you mean {close[0]}?" if close else ""


def _subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    for action in parser._actions:  # noqa: SLF001 - argparse lists sub-parsers nowhere else
        if isinstance(action, argparse._SubParsersAction):  # noqa: SLF001
            return dict(action.choices)
    return {}


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the exit status."""
    argv = sys.argv[1:] if argv is None else argv
    with quiet_broken_pipe():
        try:
            args = parse_command_line(argv or ["run"])
        except InputError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return EXIT_INPUT
        except SystemExit as exc:  # --help, --version
            return int(exc.code or 0)
        return dispatch(args)


def dispatch(args: argparse.Namespace) -> int:
    """Run the parsed command; returns the exit status."""
    if args.command in (None, "run"):
        if args.command is None:
            args = parse_command_line(["run"])
        return command_run(args)
    if args.command == "privacy":
        return command_run(args, body=_privacy)
    try:
        if args.command == "config":
            return command_config(args)
        if args.command == "analyze":
            from .analysis import run_analyze

            return run_analyze(args.run, args.out, formats=args.format)
        if args.command == "compare":
            from .analysis import run_compare

            return run_compare(
                args.runs,
                args.out,
                formats=args.format,
                labels=args.labels,
                groups=not args.no_groups,
            )
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_INPUT
    return EXIT_OK


@contextlib.contextmanager
def quiet_broken_pipe():
    """Let ``python -m hpc_fedprune ... | head`` end quietly.

    When the reader of stdout goes away, printing raises BrokenPipeError, and Python
    reports it again when it flushes stdout at exit. Inside this block stdout is wrapped:
    the first broken pipe points file descriptor 1 at /dev/null (so that the final flush
    succeeds) and every later write is dropped. The command itself carries on, so that
    ``analyze RUN | head`` still writes its tables and plots.
    """
    original = sys.stdout
    guard = _PipeGuard(original)
    sys.stdout = guard
    try:
        yield guard
    finally:
        if sys.stdout is guard:
            sys.stdout = original


class _PipeGuard:
    """A text stream that turns a broken pipe into silence (see `quiet_broken_pipe`)."""

    def __init__(self, stream) -> None:
        self._stream = stream
        self.broken = False

    def write(self, text: str) -> int:
        if not self.broken:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.broken:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def _silence(self) -> None:
        self.broken = True
        try:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, self._stream.fileno())
            os.close(devnull)
        except (OSError, ValueError, AttributeError):
            pass  # not a real file (a test's capture): dropping the writes is enough

    def __getattr__(self, name: str):
        return getattr(self._stream, name)


def command_config(args) -> int:
    """``config show|keys|list|copy``."""
    from .config import load_config, to_dict
    from .config.printing import dump_yaml, keys_markdown, keys_text, used_dict

    if args.config_command == "keys":
        print(keys_markdown() if args.markdown else keys_text())
        return EXIT_OK
    if args.config_command == "list":
        print(shipped_listing())
        return EXIT_OK
    if args.config_command == "copy":
        from .shipped import copy_shipped

        for path in copy_shipped(args.names, args.to):
            print(f"wrote {path}")
        return EXIT_OK
    config = load_config(
        getattr(args, "config", None), getattr(args, "overrides", []), getattr(args, "plugins", [])
    )
    tree = used_dict(config) if getattr(args, "used", False) else to_dict(config)
    print(dump_yaml(tree), end="")
    return EXIT_OK


def shipped_listing() -> str:
    """``config list``: every shipped config and job script with its first comment line."""
    from .shipped import shipped_files, shipped_root

    files = shipped_files()
    width = max((len(f.relative) for f in files), default=0)
    lines = [f"shipped with hpc_fedprune (in {shipped_root()}):"]
    lines += [f"  {f.relative:<{width}}  {f.description()}".rstrip() for f in files]
    lines.append(
        "copy one into the working folder: python -m hpc_fedprune config copy NAME "
        "(configs/NAME, jobs/NAME; or a folder: configs, jobs)"
    )
    return "\n".join(lines)


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
    """``run``: the Python API's run (`api.run_request`); a stop signal makes status 75."""
    from .api import RunRequest, run_request
    from .sim.signals import EXIT_REQUEUE

    outcome = run_request(RunRequest.from_args(args), world)
    return EXIT_REQUEUE if outcome.stopped else EXIT_OK


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
