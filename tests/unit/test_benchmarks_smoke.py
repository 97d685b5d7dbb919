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
    "bench",
    "kind",
    "malloc",
    "ranks",
    "repeat",
    "clients",
    "cohort",
    "samples_per_client",
    "batch_size",
    "rounds",
    "timed_rounds",
    "round_s_median",
    "updates_per_s",
    "updates_per_s_per_rank",
    "ratio_vs_bare",
    "cpu_round_s_median",
    "updates_per_cpu_s",
    "cpu_ratio_vs_bare",
    "faults_per_update",
    "group_size",
    "peak_rss_mb",
}


@pytest.mark.mpi
@pytest.mark.timeout(180)
def test_throughput_quick_prints_json_lines(tmp_path):
    proc = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--ranks",
            "1",
            "--group-sizes",
            "1",
            "2",
            "--keep",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=170,
        env=child_env(),
        cwd=REPO,
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
    kinds = sorted((row["kind"], row["group_size"] or 0) for row in rows)
    assert kinds == [
        ("bare", 0),
        ("bare_summary", 0),
        ("simulator", 1),
        ("simulator", 2),
        ("simulator_summary", 1),
        ("simulator_summary", 2),
    ]
    assert all(row["peak_rss_mb"] > 0 for row in rows)
    # The simulator's run directories were kept and hold finished runs, one per group size.
    assert len(list(tmp_path.glob("sim-*/run.h5"))) == 2


@pytest.mark.timeout(120)
def test_grouped_quick_prints_json_lines():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "grouped.py"), "--quick"],
        capture_output=True, text=True, timeout=110, env=child_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    kinds = {row["kind"] for row in rows}
    assert {"bare", "local", "stacked 2", "stacked 4", "vmap 4"} <= kinds
    summaries = {row["kind"]: row for row in rows if row["kind"].endswith("_summary")}
    assert summaries["bare_summary"]["cpu_ratio_vs_bare"] == 1.0
    assert all(math.isfinite(r["updates_per_cpu_s"]) and r["updates_per_cpu_s"] > 0 for r in rows)


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_startup_errors_prints_json_lines():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "startup_errors.py"), "--ranks", "1",
         "--repeat", "1"],
        capture_output=True, text=True, timeout=110, env=child_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert [row["case"] for row in rows] == ["unknown_key", "missing_data_root"]
    for row in rows:
        assert row["status"] == ["2"] and row["error"].startswith("error: ")
        assert row["seconds_median"] > 0 and row["cpu_s_median"] > 0
