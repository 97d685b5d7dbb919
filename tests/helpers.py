"""Shared test utilities: launching the program or a script under the venv's own mpiexec."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def mpiexec_path() -> Path:
    """The mpiexec that belongs to the interpreter running the tests (never the system one)."""
    return Path(sys.executable).with_name("mpiexec")


def child_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """Environment for launched ranks: one torch thread each, the repo importable."""
    env = dict(os.environ)
    env["OMP_NUM_THREADS"] = "1"
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    if extra:
        env.update(extra)
    return env


def run_mpi(
    nprocs: int,
    argv: list[str],
    *,
    timeout: float = 120,
    env: dict[str, str] | None = None,
    cwd: str | Path | None = None,
) -> subprocess.CompletedProcess:
    """Run ``python argv...`` on ``nprocs`` ranks; a hang fails the test after ``timeout`` s.

    ``argv`` starts after the interpreter, e.g. ``["-m", "hpc_fedprune", "run", ...]``.
    """
    cmd = [str(mpiexec_path()), "-n", str(nprocs), sys.executable, *argv]
    return subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        timeout=timeout,
        env=child_env(env),
        cwd=cwd or REPO,
    )


@contextlib.contextmanager
def registries_restored():
    """Names that plug-ins imported inside the block register are removed after it.

    The registries are process-wide, and other tests list them (the partition schemes,
    say). Built-in names registered meanwhile (a module imported on first use) stay.
    """
    from hpc_fedprune import plugins, registry

    tables = (registry.DATASETS, registry.PARTITIONS, registry.MODELS, registry.ALGORITHMS)
    before = [set(t._entries) for t in tables]  # noqa: SLF001
    loaded = set(plugins._loaded)  # noqa: SLF001
    try:
        yield
    finally:
        for table, names in zip(tables, before):
            entries = table._entries  # noqa: SLF001
            for name in [n for n in entries if n not in names and n not in table._builtin]:  # noqa: SLF001
                del entries[name]
        plugins._loaded.intersection_update(loaded)  # noqa: SLF001


@contextlib.contextmanager
def mounted_tmpfs(folder: Path, options: str):
    """A tmpfs with mount ``options`` (``size=300k``, ``ro,size=16k``) on ``folder``.

    Root only; the test is skipped where mounting is not allowed. Unmounted afterwards.
    """
    import pytest

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    folder.mkdir(exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(folder)])
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({options}) here")
    try:
        yield folder
    finally:
        subprocess.run(["umount", str(folder)], check=True)


@contextlib.contextmanager
def unwritable_folder(tmp_path: Path):
    """A folder this process cannot write to: a read-only tmpfs for root, else chmod 555."""
    folder = tmp_path / "ro"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        try:
            yield folder
        finally:
            folder.chmod(0o755)
        return
    with mounted_tmpfs(folder, "ro,size=16k"):
        yield folder
