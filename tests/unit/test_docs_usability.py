"""What a new user reads: one launch line everywhere, the package metadata, the README's
Quick start commands and install notes."""

from __future__ import annotations

import re

import pytest

from tests.helpers import REPO


def _code_lines(markdown: str) -> list[str]:
    """Lines inside ``` fences."""
    lines, inside = [], False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            inside = not inside
        elif inside:
            lines.append(line)
    return lines


def _executable_lines() -> list[tuple[str, str]]:
    """(file, line) for every command a user or a job runs: code blocks, Makefile, scripts."""
    found = []
    for md in (REPO / "README.md", REPO / "jobs" / "README.md"):
        found += [(md.name, line) for line in _code_lines(md.read_text())]
    for script in [REPO / "Makefile", *sorted((REPO / "jobs").glob("*.s*"))]:
        found += [
            (script.name, line)
            for line in script.read_text().splitlines()
            if not line.lstrip().startswith("#")
        ]
    return found


def test_one_launch_line_everywhere() -> None:
    launches = [(f, line) for f, line in _executable_lines() if "hpc_fedprune" in line]
    assert not [x for x in launches if "-m mpi4py" in x[1]], "launch without -m mpi4py"
    readme = (REPO / "README.md").read_text()
    jobs = (REPO / "jobs" / "README.md").read_text()
    assert "srun --mpi=pmi2 -n 64 python -m hpc_fedprune run" in readme
    assert "srun --mpi=pmi2 -n N python -m hpc_fedprune run" in jobs
    makefile = (REPO / "Makefile").read_text()
    assert "$(MPIEXEC) -n 2 $(PY) -m hpc_fedprune run" in makefile
    assert (
        "`make demo` runs `.venv/bin/mpiexec -n 2 .venv/bin/python -m hpc_fedprune run`" in readme
    )


def test_package_metadata() -> None:
    tomllib = pytest.importorskip("tomllib")  # Python 3.11+
    meta = tomllib.loads((REPO / "pyproject.toml").read_text())
    project = meta["project"]
    assert project["license"] == "MIT"  # an SPDX expression, not the deprecated table
    assert (REPO / project["license-files"][0]).is_file()
    assert project["authors"] and project["classifiers"]
    assert "tensorboard" in project["optional-dependencies"]
    (setuptools,) = [r for r in meta["build-system"]["requires"] if r.startswith("setuptools")]
    assert int(re.search(r">=(\d+)", setuptools).group(1)) >= 77  # SPDX needs setuptools 77


def test_readme_tells_about_the_shipped_files_and_the_console_script() -> None:
    readme = (REPO / "README.md").read_text()
    assert "python -m hpc_fedprune config list" in readme
    assert "python -m hpc_fedprune config copy" in readme
    assert "`hpc-fedprune`" in readme


def test_quick_start_compares_runs_it_made_itself() -> None:
    readme = (REPO / "README.md").read_text()
    block = readme[readme.index("## Quick start") : readme.index("## Installing")]
    lines = [line.split("#")[0].split() for line in _code_lines(block)]
    made = {words[words.index("--out") + 1] for words in lines if "--out" in words}
    for words in lines:
        if "compare" in words or "analyze" in words:
            start = words.index("compare" if "compare" in words else "analyze") + 1
            runs = [w for w in words[start:] if not w.startswith("-")]
            assert runs and set(runs) <= made, words
