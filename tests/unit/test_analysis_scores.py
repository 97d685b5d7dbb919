"""Secondary scores and model cost in analyze and compare, from hand-made run files."""

from __future__ import annotations

import csv
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc_fedprune.analysis import load_run, render_summary, run_analyze, run_compare, summarize
from hpc_fedprune.analysis.scores import format_count
from tests.unit.runfile_factory import default_metrics, write_run

NAN = np.nan


def metrics_with_scores() -> dict[str, np.ndarray]:
    m = default_metrics(4)  # evaluated in rounds 2 and 4
    m["test_top5_accuracy"] = np.array([NAN, 0.9, NAN, 0.95])
    m["test_f1_macro"] = np.array([NAN, 0.5, NAN, 0.625])
    m["test_precision_macro"] = np.array([NAN, 0.4, NAN, 0.7])
    m["test_recall_macro"] = np.array([NAN, 0.6, NAN, 0.65])
    m["params_dense"] = np.full(4, 2000.0)
    m["params_effective"] = np.array([2000.0, 1000.0, 500.0, 200.0])
    m["flops_dense"] = np.full(4, 3.0e6)
    m["flops_effective"] = np.array([3.0e6, 1.5e6, 9.0e5, 6.0e5])
    return m


def add_layer_costs(run_dir: Path) -> None:
    with h5py.File(run_dir / "run.h5", "a") as f:
        g = f.create_group("model/cost")
        g["layer"] = np.array(["conv", "fc"], dtype=h5py.string_dtype())
        g["params"] = np.array([500, 1500])
        g["flops"] = np.array([2_000_000, 1_000_000])
        rows = f.create_group("metrics_layers")
        rows["params_effective"] = np.array([[500, 1500], [100, 100]])
        rows["flops_effective"] = np.array([[2_000_000, 1_000_000], [500_000, 100_000]])


def test_summary_reports_scores_of_the_final_evaluation_and_the_last_cost(tmp_path):
    s = summarize(load_run(write_run(tmp_path / "r", metrics=metrics_with_scores())))
    assert s.final_round == 4
    assert s.scores == {
        "test_top5_accuracy": 0.95,
        "test_f1_macro": 0.625,
        "test_precision_macro": 0.7,
        "test_recall_macro": 0.65,
    }
    assert s.cost == {
        "params_dense": 2000.0,
        "params_effective": 200.0,
        "flops_dense": 3.0e6,
        "flops_effective": 6.0e5,
    }
    text = render_summary(s)
    assert "top-5 95.00 %, F1 (macro) 0.625, precision (macro) 0.7, recall (macro) 0.65" in text
    assert "params 2 k dense, 200 effective (10.0 %)" in text
    assert "FLOPs per sample 3 M dense, 600 k effective (20.0 %)" in text


def test_old_run_files_without_them_still_summarise(tmp_path):
    s = summarize(load_run(write_run(tmp_path / "r")))
    assert s.scores == {} and s.cost == {}
    assert "model cost" not in render_summary(s)


def test_regression_scores(tmp_path):
    m = default_metrics(4, "regression")
    m["test_rmse"] = np.array([NAN, 3.0, NAN, 2.5])
    m["test_r2"] = np.array([NAN, 0.5, NAN, 0.75])
    s = summarize(load_run(write_run(tmp_path / "r", task="regression", metrics=m)))
    assert s.scores == {"test_rmse": 2.5, "test_r2": 0.75}
    assert "RMSE 2.5, R^2 0.75 (round 4)" in render_summary(s)


def test_analyze_writes_the_layer_table(tmp_path, capsys):
    run_dir = write_run(tmp_path / "r", metrics=metrics_with_scores(), masks={})
    add_layer_costs(run_dir)
    run_analyze(str(run_dir), str(tmp_path / "out"))
    with open(tmp_path / "out" / "layer_cost.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert [(r["layer"], r["params_dense"], r["params_effective"]) for r in rows] == [
        ("conv", "500", "100"),
        ("fc", "1500", "100"),
    ]
    assert [float(r["flops_fraction"]) for r in rows] == [0.25, 0.1]
    assert "model cost" in capsys.readouterr().out


def test_compare_has_score_and_cost_columns(tmp_path, capsys):
    a = write_run(tmp_path / "a", metrics=metrics_with_scores())
    b = write_run(tmp_path / "b", algorithm="fedavg", masks={})  # an older run file
    run_compare([str(a), str(b)], str(tmp_path / "cmp"))
    with open(tmp_path / "cmp" / "compare.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert float(rows[0]["final_f1_macro"]) == 0.625
    assert float(rows[0]["final_top5_accuracy"]) == 0.95
    assert float(rows[0]["flops_effective"]) == 6.0e5
    assert rows[1]["final_f1_macro"] == "" and rows[1]["flops_dense"] == ""
    printed = capsys.readouterr().out.splitlines()
    header = printed[0]
    assert "top-5" in header and "F1 (macro)" in header and "FLOPs vs dense" in header
    assert "0.2 x" in printed[2] and "95.00 %" in printed[2]


@pytest.mark.parametrize(
    ("n", "text"), [(118282, "118 k"), (1.11e9, "1.11 G"), (512, "512"), (NAN, "n/a")]
)
def test_format_count(n, text):
    assert format_count(n) == text
