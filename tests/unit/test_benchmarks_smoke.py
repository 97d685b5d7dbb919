"""benchmarks/throughput.py --quick runs and prints JSON lines with the documented keys.

A smoke test only: one rank, a few clients, one round. No timing is asserted.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys

import pytest

from tests.helpers import REPO, child_env

SCRIPT = REPO / "benchmarks" / "throughput.py"
KEYS = {
    "bench", "kind", "malloc", "ranks", "repeat", "clients", "cohort", "samples_per_client",
    "batch_size", "rounds", "timed_rounds", "round_s_median", "updates_per_s",
    "updates_per_s_per_rank", "ratio_vs_bare", "cpu_round_s_median", "updates_per_cpu_s",
    "cpu_ratio_vs_bare", "faults_per_update",
}


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_throughput_quick_prints_json_lines(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--ranks", "1", "--keep", str(tmp_path)],
        capture_output=True, text=True, timeout=170, env=child_env(), cwd=REPO,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    rows = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all(isinstance(row, dict) for row in rows)
    for row in rows:
        assert KEYS <= row.keys(), KEYS - row.keys()
        assert row["bench"] == "throughput"
        assert row["ranks"] == 1
        assert row["clients"] == 8 and row["cohort"] == 4 and row["rounds"] == 1
        assert math.isfinite(row["updates_per_s"]) and row["updates_per_s"] > 0
    kinds = sorted(row["kind"] for row in rows)
    assert kinds == ["bare", "bare_summary", "simulator", "simulator_summary"]
    # The simulator's run directory was kept and holds a finished run.
    assert len(list(tmp_path.glob("sim-*/run.h5"))) == 1
