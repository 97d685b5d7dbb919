"""jobs/compare_local.sh runs each line of a sweep file, skips finished runs, and compares them."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.conftest import TINY
from tests.helpers import REPO, child_env


def run_script(sweep: Path, out: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(REPO / "jobs" / "compare_local.sh"), str(sweep), str(out)],
        capture_output=True,
        text=True,
        timeout=250,
        env=child_env() | {"PYTHON": sys.executable},
        cwd=REPO,
    )


@pytest.mark.timeout(300)
def test_runs_every_line_then_skips_finished_runs(tmp_path):
    tiny = " ".join(TINY).replace("data.shape=[1, 12, 12]", "'data.shape=[1, 12, 12]'")
    sweep = tmp_path / "sweep.txt"
    sweep.write_text(
        "# two methods under the same conditions\n"
        f"{tiny} output.name=dense\n"
        "\n"
        f"{tiny} output.name=pruned algorithm.name=fedsparsify\n"
    )
    out = tmp_path / "runs"
    first = run_script(sweep, out)
    assert first.returncode == 0, first.stdout + first.stderr
    assert (out / "dense" / "run.h5").is_file() and (out / "pruned" / "run.h5").is_file()
    table = first.stdout[first.stdout.index(" run ") :]
    assert "dense" in table and "pruned" in table and "FedSparsify-Global" in table
    assert (out / "compare" / "compare.csv").is_file()

    again = run_script(sweep, out)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "dense: finished, skipped" in again.stdout
    assert "pruned: finished, skipped" in again.stdout
