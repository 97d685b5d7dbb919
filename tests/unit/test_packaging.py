"""A wheel carries the example configs and job scripts: usable after pip install, no clone.

The wheel is built from a copy of the sources (no network, the installed setuptools) and
installed with ``pip install --target``; the command then runs from a folder outside the
repository with that folder first on ``sys.path``, as an installed package would be found.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.helpers import REPO

SOURCES = ("pyproject.toml", "setup.py", "MANIFEST.in", "LICENSE", "README.md")
FOLDERS = ("hpc_fedprune", "configs", "jobs")


def _pip(*args: str, cwd: Path) -> None:
    subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q", *args],
        cwd=cwd,
        check=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The wheel, installed into a folder of its own; returns that folder."""
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        shutil.copy2(REPO / name, src / name)
    for folder in FOLDERS:
        shutil.copytree(
            REPO / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__", "_shipped")
        )
    _pip(
        "wheel", "--no-deps", "--no-build-isolation", "--no-index", str(src), "-w", "dist", cwd=tmp
    )
    (wheel,) = (tmp / "dist").glob("hpc_fedprune-*.whl")
    _pip("install", "--no-deps", "--no-index", "--target", str(tmp / "site"), str(wheel), cwd=tmp)
    return tmp / "site"


def _run(site: Path, cwd: Path, *argv: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(site)}
    return subprocess.run(
        [sys.executable, "-m", "hpc_fedprune", *argv],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_installed_wheel_lists_and_copies_the_shipped_files(
    installed: Path, tmp_path: Path
) -> None:
    proc = _run(installed, tmp_path, "config", "list")
    assert proc.returncode == 0, proc.stderr
    # Found inside the installed package, not in a checkout.
    assert f"(in {installed / 'hpc_fedprune' / '_shipped'})" in proc.stdout
    shipped = sorted(p.name for p in (REPO / "configs").glob("*.yaml"))
    shipped += sorted(p.name for p in (REPO / "jobs").iterdir() if p.is_file())
    for name in shipped:
        assert name in proc.stdout, name

    proc = _run(installed, tmp_path, "config", "copy", "fedavg_fmnist_lenet5", "jobs")
    assert proc.returncode == 0, proc.stderr
    copied = tmp_path / "configs" / "fedavg_fmnist_lenet5.yaml"
    assert copied.read_bytes() == (REPO / "configs" / "fedavg_fmnist_lenet5.yaml").read_bytes()
    assert (tmp_path / "jobs" / "run.sbatch").read_bytes() == (
        REPO / "jobs" / "run.sbatch"
    ).read_bytes()
    # The README's command line works on the copy.
    proc = _run(
        installed, tmp_path, "config", "show", "--config", "configs/fedavg_fmnist_lenet5.yaml"
    )
    assert proc.returncode == 0 and "lenet5" in proc.stdout, proc.stderr


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_installed_wheel_has_the_metadata_and_console_script(installed: Path) -> None:
    (info,) = installed.glob("hpc_fedprune-*.dist-info")
    metadata = (info / "METADATA").read_text()
    assert "License-Expression: MIT" in metadata
    assert "Author: The hpc_fedprune developers" in metadata
    assert "Classifier: Programming Language :: Python :: 3" in metadata
    assert "Provides-Extra: tensorboard" in metadata
    assert (info / "licenses" / "LICENSE").is_file()
    script = installed / "bin" / "hpc-fedprune"
    proc = subprocess.run(
        [sys.executable, str(script), "--version"],
        env={**os.environ, "PYTHONPATH": str(installed)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0 and proc.stdout.startswith("hpc_fedprune "), proc.stderr
