"""The command line: ``run`` (default), ``config show|keys``, ``analyze``, ``compare``, ``privacy``.

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

import numpy as np

from .errors import EXIT_INPUT, EXIT_INTERNAL, EXIT_OK, InputError

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


def default_out_dir(name: str) -> Path:
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def command_run(args, body=None) -> int:
    """Run an experiment (or another collective ``body``) on every rank of MPI.COMM_WORLD."""
    os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported
    from .comm.world import World

    world = World.from_mpi()
    try:
        code = (body or _run)(args, world)
    except InputError as exc:
        if world.is_root:
            print(f"error: {exc}", file=sys.stderr, flush=True)
        code = EXIT_INPUT
    except Exception as exc:  # noqa: BLE001 - any failure must end every rank
        world.abort_on_exception(exc)
        return EXIT_INTERNAL
    if code != EXIT_OK:
        # Every rank gets here together (input errors and stops are agreed collectively).
        # Finalising now keeps `python -m mpi4py` from turning the status into an abort,
        # so a job script sees 2 or 75, not a kill.
        world.finalize()
    return code


def _run(args, world) -> int:
    from .comm.world import check_launch, limit_threads, pick_device
    from .config import load_config
    from .sim.loop import run_rounds
    from .sim.setup import build_setup, idle_ranks
    from .sim.signals import EXIT_REQUEUE, StopFlag

    error = None
    setup = out_dir = config = checkpoint = None
    finished = False
    try:
        check_launch(world)
        if args.resume:
            out_dir = Path(args.resume)
            if args.config or args.out or args.overrides:
                raise InputError(
                    "run --resume DIR takes the run's own config: no --config, --out or overrides"
                )
            config = load_config(out_dir / "config.yaml")
        else:
            config = load_config(args.config, args.overrides)
            out_dir = (
                Path(args.out)
                if args.out
                else Path(config.output.dir or default_out_dir(config.output.name))
            )
        limit_threads(config.runtime.threads)
        world.set_waiting(config.runtime.wait)
        device = pick_device(config.runtime.device, world.local_rank)
        if world.is_root:
            if args.resume:
                checkpoint, finished = prepare_resume(out_dir, world.size)
            else:
                check_out_dir(out_dir)
    except InputError as exc:
        error = exc
    # Agreed before the data set is built: with shared memory, building it is collective.
    world.agree_on_input_errors(error)
    try:
        setup = build_setup(config, world.size, device, world=world)
    except InputError as exc:
        error = exc
    world.agree_on_input_errors(error)
    if world.bcast_object(finished):
        if world.is_root:
            print(f"{out_dir} holds a finished run; nothing to resume", flush=True)
        return EXIT_OK
    out_dir = Path(world.bcast_object(str(out_dir)))
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
    stop = StopFlag().install()
    try:
        result = run_rounds(config, world, setup, out_dir, resume=checkpoint, stop=stop)
    except Exception:
        if world.is_root and (out_dir / "run.h5").exists():
            mark_failed(out_dir)
        raise
    finally:
        stop.restore()
    setup.release()
    if world.is_root:
        if not result.stopped:
            print(summary_line(out_dir), flush=True)
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


def summary_line(out_dir: Path) -> str:
    """One line at the end of a run: scores, bytes, time (from the run file itself)."""
    import h5py

    with h5py.File(out_dir / "run.h5", "r") as f:
        m = f["metrics"]
        name = "test_accuracy" if "test_accuracy" in m else "test_mae"
        scores = m[name][...]
        valid = scores[~np.isnan(scores)]
        best = (
            (valid.max() if name == "test_accuracy" else valid.min())
            if len(valid)
            else float("nan")
        )
        up, down = m["bytes_up"][...].sum(), m["bytes_down"][...].sum()
        dense = m["bytes_up_dense_equiv"][...].sum()
        return (
            f"done: {len(scores)} rounds, final {name} {scores[-1]:.4f}, best {best:.4f}, "
            f"sparsity {m['sparsity'][-1]:.3f}, "
            f"bytes up {up / 1e6:.1f} MB down {down / 1e6:.1f} MB "
            f"({(up + down) / (2 * dense):.3f} x dense), {f.attrs.get('wall_s', 0):.1f} s"
        )


def prepare_resume(out_dir: Path, world_size: int):
    """Rank 0: put the run directory back to its last checkpoint.

    Returns (checkpoint or None, finished). Without a checkpoint the run starts again
    from round 1 in the same directory.
    """
    import h5py

    from .store.checkpoint import latest_checkpoint, restore_run_file, truncate_jsonl

    run_file = out_dir / "run.h5"
    if not (out_dir / "config.yaml").exists():
        raise InputError(f"{out_dir} holds no run to resume (no config.yaml)")
    if run_file.exists():
        try:
            with h5py.File(run_file, "r") as f:
                if f.attrs.get("status") == "finished":
                    return None, True
        except OSError:
            pass  # damaged by the crash: the checkpoint's snapshot replaces it
    checkpoint = latest_checkpoint(out_dir)
    if checkpoint is None:
        print(f"no checkpoint in {out_dir}: starting again from round 1", flush=True)
        if run_file.exists():
            run_file.unlink()
        return None, False
    restore_run_file(out_dir, checkpoint)
    truncate_jsonl(out_dir / "metrics.jsonl", checkpoint.round)
    with h5py.File(run_file, "a") as f:
        f.attrs["world_size"] = world_size
        f.attrs["resumed_at"] = np.append(
            f.attrs.get("resumed_at", np.zeros(0, np.int64)), checkpoint.round
        )
    print(f"resuming {out_dir} after round {checkpoint.round} on {world_size} rank(s)", flush=True)
    return checkpoint, False


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
