"""benchmarks/client_state.py --quick runs and prints one JSON line with the documented keys.

A smoke test only: one rank, 50 clients, 3 rounds, a budget small enough to spill. No
timing is asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.helpers import REPO, child_env

SCRIPT = REPO / "benchmarks" / "client_state.py"
KEYS = {
    "bench", "model", "numel", "ranks", "clients", "cohort", "rounds", "density", "budget_mb",
    "state_mb_per_client", "clients_with_state", "spilled", "memory_state_mb", "spill_file_mb",
    "round_s_median", "round_s_max", "fetch_s_median", "load_s_median", "compute_s_median",
    "keep_s_median", "send_s_median",
    "baseline_rss_mb", "peak_rss_mb_per_rank",
}  # fmt: skip


@pytest.mark.timeout(120)
def test_client_state_quick_prints_one_json_line(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--spill-dir", str(tmp_path)],
        capture_output=True, text=True, timeout=110, env=child_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = [line for line in proc.stdout.splitlines() if line.strip()]
    assert len(lines) == 1
    row = json.loads(lines[0])
    assert KEYS <= row.keys(), set(KEYS) - row.keys()
    assert row["bench"] == "client_state" and row["ranks"] == 1
    assert row["clients_with_state"] > row["cohort"]  # states persist across rounds
    assert row["spilled"] > 0 and row["memory_state_mb"] <= row["budget_mb"]
    assert row["spill_file_mb"] > 0
    assert not list(tmp_path.iterdir())  # spill folders removed
