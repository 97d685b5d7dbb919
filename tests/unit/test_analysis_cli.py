"""run_analyze and run_compare as the command line calls them: files written, output, errors."""

from __future__ import annotations

import builtins
import csv
from pathlib import Path

import numpy as np
import pytest

from hpc_fedprune.analysis import run_analyze, run_compare
from hpc_fedprune.analysis.compare import pareto_front
from hpc_fedprune.errors import EXIT_OK, InputError
from tests.unit.runfile_factory import KNOWN_CLIENT_ROWS, default_metrics, write_run

CSVS = ["metrics.csv", "mask_stats.csv", "mask_overall.csv", "mask_tensors.csv"]
CLIENT_CSVS = ["client_agreement.csv", "client_keep_histogram.csv"]
PNGS = [
    "accuracy_vs_round.png",
    "accuracy_vs_bytes.png",
    "sparsity_heatmap.png",
    "mask_change_rate.png",
]


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture
def no_matplotlib(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make every ``import matplotlib...`` fail, as on a machine without the plot extra."""
    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)


def test_analyze_writes_tables_and_plots(tmp_path: Path, capsys) -> None:
    run_dir = write_run(tmp_path / "run1", client_rows=KNOWN_CLIENT_ROWS)
    assert run_analyze(str(run_dir), None) == EXIT_OK
    out_dir = run_dir / "analysis"
    for name in CSVS + CLIENT_CSVS + PNGS:
        assert (out_dir / name).stat().st_size > 0, name
    printed = capsys.readouterr().out
    assert "FedSparsify-Global (fedsparsify) on mnist" in printed and "finished" in printed
    assert f"wrote {len(CSVS + CLIENT_CSVS + PNGS)} files:" in printed
    assert str(out_dir / "sparsity_heatmap.png") in printed

    metrics = _read(out_dir / "metrics.csv")
    assert len(metrics) == 8 and list(metrics[0])[0] == "round"
    assert metrics[0]["test_accuracy"] == ""  # round 1 was not evaluated
    assert float(metrics[1]["test_accuracy"]) == pytest.approx(0.6)
    assert float(metrics[-1]["cumulative_bytes"]) == 24e6

    stats = _read(out_dir / "mask_stats.csv")
    assert len(stats) == 8  # 4 records x 2 tensors
    row = next(r for r in stats if r["tensor"] == "conv1.weight" and r["round"] == "6")
    assert (row["pruned"], row["regrown"], row["hamming"]) == ("2", "1", "3")
    assert float(row["jaccard"]) == pytest.approx(6 / 9)
    assert stats[0]["pruned"] == ""  # no change at the first record
    overall = _read(out_dir / "mask_overall.csv")
    assert [r["round"] for r in overall] == ["2", "4", "6", "8"]
    tensors = {r["tensor"]: r for r in _read(out_dir / "mask_tensors.csv")}
    assert tensors["conv1.weight"]["stable_after_round"] == "6"
    assert tensors["fc.weight"]["stable_after_round"] == ""
    agreement = _read(out_dir / "client_agreement.csv")
    assert float(agreement[0]["mean_pairwise_jaccard"]) == pytest.approx(2 / 3)
    hist = _read(out_dir / "client_keep_histogram.csv")
    assert [r["positions"] for r in hist if r["round"] == "3" and r["tensor"] == "fc.weight"] == [
        "1",
        "1",
        "1",
        "2",
    ]


def test_analyze_without_matplotlib_writes_csvs_and_says_how_to_get_plots(
    tmp_path: Path, capsys, no_matplotlib
) -> None:
    run_dir = write_run(tmp_path / "run1")
    out = tmp_path / "elsewhere"
    assert run_analyze(str(run_dir / "run.h5"), str(out)) == EXIT_OK
    assert sorted(p.name for p in out.iterdir()) == sorted(CSVS)
    printed = capsys.readouterr().out
    assert "pip install 'hpc_fedprune[plot]'" in printed
    assert not (run_dir / "analysis").exists()


def test_analyze_dense_run_has_no_mask_tables(tmp_path: Path, capsys) -> None:
    run_dir = write_run(tmp_path / "dense", algorithm="fedavg", masks={})
    assert run_analyze(str(run_dir), None) == EXIT_OK
    names = sorted(p.name for p in (run_dir / "analysis").iterdir())
    assert names == ["accuracy_vs_bytes.png", "accuracy_vs_round.png", "metrics.csv"]
    assert "no mask records" in capsys.readouterr().out


def test_analyze_bad_input(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        run_analyze(str(tmp_path / "missing"), None)
    run_dir = write_run(tmp_path / "r")
    blocker = tmp_path / "a_file"
    blocker.write_text("")
    with pytest.raises(InputError, match="cannot create the output folder"):
        run_analyze(str(run_dir), str(blocker / "sub"))


def test_pareto_front() -> None:
    acc = [0.90, 0.85, 0.80, np.nan, 0.85]
    cost = [100.0, 10.0, 50.0, 1.0, 10.0]
    # 0.80 @ 50 is beaten by 0.85 @ 10; a run never evaluated is never on the front; the two
    # identical runs do not beat each other.
    np.testing.assert_array_equal(pareto_front(acc, cost), [True, True, False, False, True])
    # For an error, lower is better.
    np.testing.assert_array_equal(
        pareto_front([0.1, 0.2, 0.3], [30.0, 20.0, 25.0], higher_is_better=False),
        [True, True, False],
    )


def test_compare_marks_the_frontier(tmp_path: Path, capsys) -> None:
    cheap = default_metrics(8)  # final 0.9 for 24 MB
    costly = default_metrics(8)  # worse and dearer: dominated
    costly["test_accuracy"] = cheap["test_accuracy"] - 0.1
    costly["bytes_down"] = costly["bytes_down"] * 10
    a = write_run(tmp_path / "runs" / "sparse", metrics=cheap)
    b = write_run(tmp_path / "runs" / "dense", algorithm="fedavg", metrics=costly, masks={})
    out = tmp_path / "cmp"
    assert run_compare([str(a), str(b / "run.h5")], str(out)) == EXIT_OK
    rows = _read(out / "compare.csv")
    assert [(r["run"], r["method"], r["algorithm"], r["pareto"]) for r in rows] == [
        ("sparse", "FedSparsify-Global", "fedsparsify", "1"),
        ("dense", "FedAvg", "fedavg", "0"),
    ]
    assert float(rows[0]["final"]) == pytest.approx(0.9)
    assert float(rows[1]["bytes_down"]) == 160e6
    assert float(rows[0]["traffic_vs_dense"]) == pytest.approx(24 / 64)
    assert float(rows[0]["uplink_vs_dense"]) == pytest.approx(8 / 32)
    assert float(rows[0]["downlink_vs_dense"]) == pytest.approx(16 / 32)
    assert (out / "compare_accuracy_vs_round.png").exists()
    assert (out / "compare_accuracy_vs_bytes.png").exists()
    printed = capsys.readouterr().out
    first_row = printed.splitlines()[2]
    assert first_row.startswith("*") and "sparse" in first_row
    assert "Pareto frontier" in printed


def test_compare_without_matplotlib(tmp_path: Path, capsys, no_matplotlib) -> None:
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b")
    assert run_compare([str(a), str(b)], str(tmp_path / "cmp")) == EXIT_OK
    assert [p.name for p in (tmp_path / "cmp").iterdir()] == ["compare.csv"]
    assert "hpc_fedprune[plot]" in capsys.readouterr().out


def test_compare_labels_same_named_runs_apart(tmp_path: Path, capsys) -> None:
    a = write_run(tmp_path / "x" / "run")
    b = write_run(tmp_path / "y" / "run")
    run_compare([str(a), str(b)], str(tmp_path / "cmp"))
    assert [r["run"] for r in _read(tmp_path / "cmp" / "compare.csv")] == ["x/run", "y/run"]


def test_compare_refuses_mixed_tasks(tmp_path: Path) -> None:
    a = write_run(tmp_path / "a")
    b = write_run(tmp_path / "b", task="regression", metrics=default_metrics(8, "regression"))
    with pytest.raises(InputError, match="cannot compare classification"):
        run_compare([str(a), str(b)], str(tmp_path / "cmp"))
