"""Stage 1 of a run: every check that needs neither torch nor the data.

``run`` starts in two stages, so that a mistake shows in well under a second instead of
after torch has been imported (seconds, on every rank):

1. here (called by `api.check_request`), on every rank, before anything heavy is imported:
   the command line, the plug-ins (imported first: they may register names), the config
   (types, ranges, finite numbers, the names of data sets, models and methods against the
   registries), the paths it gives (``data.root`` must exist, ``output.name`` is one
   folder name), the run directory (``--out`` writable and not holding a run yet;
   ``--resume`` a folder that holds a run);
2. in `api.execute`, after torch and the rest are imported: the device, and the options
   of the chosen data set, model and method while the set-up is built.

Every rank runs both stages and the ranks agree on the first error, which rank 0 prints
(the Python API raises it on every rank instead).
"""

from __future__ import annotations

import datetime as _dt
import os
from dataclasses import dataclass
from pathlib import Path

from .config import Config, load_config
from .errors import InputError

RUN_FILE = "run.h5"
CONFIG_FILE = "config.yaml"
CHECKPOINTS = ("checkpoint.h5", "checkpoint.prev.h5")


@dataclass(frozen=True)
class RunPlan:
    """What stage 1 settled: the config and where the run goes.

    Attributes
    ----------
    config : Config
        The validated config (the run directory's own one for a resume).
    out_dir : Path
        The run directory (on ranks other than 0 the default one may differ by its time
        stamp: rank 0's is the one used).
    resume : bool
        Whether the run continues the one in ``out_dir``.
    """

    config: Config
    out_dir: Path
    resume: bool


def plan_run(args, *, is_root: bool = True) -> RunPlan:
    """Check the ``run`` command line and its config; raises InputError on the first problem.

    Parameters
    ----------
    args : argparse.Namespace or api.RunRequest
        ``config``, ``out``, ``resume``, ``overrides`` and ``plugins`` (``--plugin``) of
        the ``run`` command; the config may be a path, a mapping or a `Config`
        (`load_config`).
    is_root : bool
        Rank 0 also checks the run directory (only rank 0 writes it).
    """
    plugins = getattr(args, "plugins", None) or []
    if args.resume:
        if args.config is not None or args.out is not None or args.overrides:
            raise InputError(
                "run --resume DIR takes the run's own config: no --config, --out or overrides"
            )
        out_dir = Path(args.resume)
        check_resume_dir(out_dir)
        config = load_config(out_dir / CONFIG_FILE, plugins=plugins)
    else:
        config = load_config(args.config, args.overrides, plugins)
        out_dir = (
            Path(args.out)
            if args.out
            else Path(config.output.dir or default_out_dir(config.output.name))
        )
        if is_root:
            check_new_run_dir(out_dir, "--out" if args.out else "output.dir")
    check_paths(config)
    return RunPlan(config, out_dir, bool(args.resume))


def default_out_dir(name: str) -> Path:
    """``runs/<name>-<timestamp>`` (``name`` was checked to be one folder name)."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{name}-{stamp}"


def check_paths(config: Config) -> None:
    """Paths the config names that must exist: ``data.root``, when given."""
    root = config.data.root
    if root is not None:
        path = Path(root).expanduser()
        if not path.exists():
            raise InputError(f"data.root: {root} does not exist")
        if not path.is_dir():
            raise InputError(f"data.root: {root} is not a folder")


def check_new_run_dir(out_dir: Path, option: str = "--out") -> None:
    """A new run's directory: not holding a run, and writable (or creatable).

    Raises
    ------
    InputError
        It holds ``run.h5``, is a file, or neither it nor the folder it would be created
        in can be written by this process.
    """
    if (out_dir / RUN_FILE).exists():
        raise InputError(f"{out_dir} already holds a run ({RUN_FILE}); choose another --out")
    if out_dir.exists() and not out_dir.is_dir():
        raise InputError(f"{option} {out_dir} exists and is not a directory")
    existing = out_dir.absolute()
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise InputError(f"{option} {out_dir}: {existing} is not a directory")
    if not _writable(existing):
        raise InputError(f"{option} {out_dir}: cannot write to {existing} (permission denied)")


def check_resume_dir(out_dir: Path) -> None:
    """A folder to resume: it exists, holds a run with its ``config.yaml``, and is writable."""
    if not out_dir.exists():
        raise InputError(f"--resume {out_dir}: no such folder")
    if not out_dir.is_dir():
        raise InputError(f"--resume {out_dir}: not a folder")
    has_run = any((out_dir / name).is_file() for name in (RUN_FILE, *CHECKPOINTS))
    if not (out_dir / CONFIG_FILE).is_file():
        if has_run:
            raise InputError(
                f"{out_dir} holds no {CONFIG_FILE}: a run is resumed with its own config"
            )
        raise InputError(
            f"{out_dir} holds no run to resume (no {CONFIG_FILE}, {RUN_FILE} or checkpoint)"
        )
    if not _writable(out_dir):
        raise InputError(f"--resume {out_dir}: cannot write to it (permission denied)")


def _writable(folder: Path) -> bool:
    # access() also answers False on a read-only file system.
    return os.access(folder, os.W_OK | os.X_OK)
