"""The traffic figures: one definition, the same number in the end line, analyze and compare."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hpc_fedprune.analysis import load_run, run_analyze, run_compare
from hpc_fedprune.analysis.figures import (
    DEFINITIONS,
    downlink_vs_dense,
    traffic_of,
    traffic_vs_dense,
    uplink_vs_dense,
)
from hpc_fedprune.analysis.summary import end_of_run_line
from hpc_fedprune.store.rundir import RunDir
from tests.helpers import REPO
from tests.unit.runfile_factory import default_metrics, write_run


def _lopsided(rounds: int = 4) -> dict[str, np.ndarray]:
    """Uplink 1 MB, downlink 3 MB, dense 5 MB per round: every figure differs."""
    m = default_metrics(rounds)
    m["bytes_up"] = np.full(rounds, 1e6)
    m["bytes_down"] = np.full(rounds, 3e6)
    m["bytes_up_dense_equiv"] = np.full(rounds, 5e6)
    return m


def test_the_three_figures_by_hand() -> None:
    assert uplink_vs_dense(1.0, 5.0) == pytest.approx(0.2)
    assert downlink_vs_dense(3.0, 5.0) == pytest.approx(0.6)
    assert traffic_vs_dense(1.0, 3.0, 5.0) == pytest.approx(0.4)  # 4 / 10
    assert np.isnan(traffic_vs_dense(1.0, 3.0, 0.0))  # no dense reference: no figure
    t = traffic_of(_lopsided())
    assert (t.bytes_up, t.bytes_down, t.dense) == (4e6, 12e6, 20e6)
    assert (t.uplink_vs_dense, t.downlink_vs_dense, t.traffic_vs_dense) == pytest.approx(
        (0.2, 0.6, 0.4)
    )


def test_end_line_analyze_and_compare_print_the_same_traffic_vs_dense(
    tmp_path: Path, capsys
) -> None:
    run_dir = write_run(tmp_path / "r", metrics=_lopsided(), masks={})
    line = RunDir(run_dir).summary_line()
    assert line == end_of_run_line(load_run(run_dir))
    # final = best = round 4's 0.5 + 0.05 * 4; wall time: 4 rounds x 1.5 s.
    assert line == (
        "done: 4 rounds, final test_accuracy 0.7000, best 0.7000, sparsity 0.400, "
        "bytes up 4.0 MB down 12.0 MB, traffic_vs_dense 0.400, 6.0 s"
    )

    run_analyze(str(run_dir), str(tmp_path / "a"))
    text = capsys.readouterr().out
    assert "uplink_vs_dense 0.200" in text
    assert "downlink_vs_dense 0.600" in text
    assert "traffic_vs_dense 0.400" in text

    run_compare([str(run_dir)], str(tmp_path / "c"))
    table = capsys.readouterr().out
    header, _rule, row = table.splitlines()[:3]
    assert "traffic_vs_dense" in header.split()
    assert " 0.400 " in row  # the traffic_vs_dense column (the only figure in the table)
    with open(tmp_path / "c" / "compare.csv", newline="") as f:
        (saved,) = list(csv.DictReader(f))
    assert float(saved["traffic_vs_dense"]) == pytest.approx(0.4)
    assert float(saved["uplink_vs_dense"]) == pytest.approx(0.2)
    assert float(saved["downlink_vs_dense"]) == pytest.approx(0.6)


def test_readme_defines_every_figure() -> None:
    readme = (REPO / "README.md").read_text()
    for name, definition in DEFINITIONS.items():
        assert f"`{name}`" in readme, name
        formula = definition.split(":")[0]
        assert formula in readme, formula
