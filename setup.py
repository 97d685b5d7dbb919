"""Build hook: ship the repository's ``configs/`` and ``jobs/`` inside the package.

The two folders stay where they are in the repository (the README, the job scripts and
the tests use those paths); a wheel gets a copy of each under ``hpc_fedprune/_shipped/``,
which `hpc_fedprune.shipped` finds after ``pip install`` without a clone. Everything else
about the package is in ``pyproject.toml``.
"""

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

SHIPPED = ("configs", "jobs")


class BuildPyWithShipped(build_py):
    """``build_py`` that also copies ``configs/`` and ``jobs/`` into the built package."""

    def run(self):
        super().run()
        if self.editable_mode:
            return  # an editable install reads the checkout's own folders
        root = Path(__file__).resolve().parent
        target = Path(self.build_lib) / "hpc_fedprune" / "_shipped"
        for folder in SHIPPED:
            for src in sorted((root / folder).iterdir()):
                if src.is_file() and not src.name.startswith("."):
                    dest = target / folder / src.name
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(src, dest)


setup(cmdclass={"build_py": BuildPyWithShipped})
