"""The headline numbers of a run and their text."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import h5py
import numpy as np
import pytest

from hpc_fedprune.analysis import load_run, mask_history, render_summary, summarize
from hpc_fedprune.analysis.summary import best_and_final, stale_after, status_text
from hpc_fedprune.analysis.units import format_bytes, format_duration
from tests.unit.runfile_factory import default_metrics, write_run

NAN = np.nan


def _metrics(task: str = "classification") -> dict[str, np.ndarray]:
    m = default_metrics(8, task)
    key = "test_accuracy" if task == "classification" else "test_mae"
    m[key] = np.array([NAN, 0.6, NAN, 0.8, NAN, 0.7, NAN, NAN])
    return m


def test_summary_of_a_classification_run(tmp_path: Path) -> None:
    s = summarize(load_run(write_run(tmp_path / "r", metrics=_metrics())))
    assert (s.algorithm, s.dataset, s.model, s.num_clients) == (
        "fedsparsify",
        "mnist",
        "lenet5",
        10,
    )
    assert (s.rounds_done, s.rounds_planned, s.status_text) == (8, 8, "finished")
    assert s.quality.key == "test_accuracy" and s.quality.higher_is_better
    # The last round was not evaluated: final is the last evaluation.
    assert (s.best, s.best_round, s.final, s.final_round) == (0.8, 4, 0.7, 6)
    assert s.final_sparsity == pytest.approx(0.8)
    assert (s.bytes_up, s.bytes_down, s.bytes_dense) == (8e6, 16e6, 32e6)
    # Hand-computed from the factory's metrics: 8 rounds of 1 MB up, 2 MB down, 4 MB dense.
    assert (s.uplink_vs_dense, s.downlink_vs_dense, s.traffic_vs_dense) == pytest.approx(
        (8 / 32, 16 / 32, (8 + 16) / (2 * 32))
    )
    assert s.wall_s == pytest.approx(12.0) and s.mpi_bytes == 4e6


def test_regression_run_reports_mae_lower_is_better(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r", task="regression", metrics=_metrics("regression")))
    s = summarize(run)
    assert s.quality.key == "test_mae" and not s.quality.higher_is_better
    assert (s.best, s.best_round, s.final, s.final_round) == (0.6, 2, 0.7, 6)
    text = render_summary(s)
    assert "MAE" in text and "lower is better" in text


def test_text_rendering_lists_the_headline_numbers(tmp_path: Path) -> None:
    run = load_run(write_run(tmp_path / "r", metrics=_metrics(), status="interrupted"))
    text = render_summary(summarize(run), mask_history(run))
    assert "FedSparsify-Global (fedsparsify) on mnist (lenet5), 10 clients" in text
    assert "8 of 8: interrupted at round 8" in text
    assert "best 80.00 % (round 4), final 70.00 % (round 6)" in text
    assert "final 80.0 % (density 20.0 %)" in text
    assert "8 MB: uplink_vs_dense 0.250 (dense 32 MB)" in text
    assert "16 MB: downlink_vs_dense 0.500" in text
    assert "24 MB up + down: traffic_vs_dense 0.375" in text
    assert "4 records (rounds 2-8) of 2 tensors; still changing in the last round" in text
    assert "11.76 % of weights ever regrown" in text  # 2 of 17


def test_run_never_evaluated(tmp_path: Path) -> None:
    m = default_metrics(3)
    m["test_accuracy"] = np.full(3, NAN)
    s = summarize(load_run(write_run(tmp_path / "r", metrics=m, status="running")))
    assert np.isnan(s.best) and s.best_round is None and s.final_round is None
    assert "not evaluated yet" in render_summary(s)


@pytest.mark.parametrize(
    ("status", "want"),
    [
        ("finished", "finished"),
        ("interrupted", "interrupted at round 5"),
        ("failed", "failed after round 5"),
        ("running", "running (or killed"),
    ],
)
def test_status_text(status: str, want: str) -> None:
    assert status_text(status, 5).startswith(want)


def test_best_and_final_ties_go_to_the_earliest_round() -> None:
    rounds = np.array([1, 2, 3])
    assert best_and_final(rounds, np.array([0.5, 0.9, 0.9]), True) == (0.9, 2, 0.9, 3)
    assert best_and_final(rounds, np.array([0.5, 0.2, 0.2]), False) == (0.2, 2, 0.2, 3)


def test_units() -> None:
    assert format_bytes(999) == "999 B"
    assert format_bytes(12_345_678) == "12.3 MB"
    assert format_bytes(2.5e9) == "2.5 GB"
    assert format_duration(12.34) == "12.3 s"
    assert format_duration(192.4) == "3 min 12 s"
    assert format_duration(3725) == "1 h 02 min"


# --- running or crashed: the heartbeat -------------------------------------------------

NOW = dt.datetime(2026, 5, 1, 12, 0, 0, tzinfo=dt.timezone.utc)


def _running(tmp_path: Path, age_s: float | None, wall_s: float = 1.5):
    m = default_metrics(8)
    m["wall_s"] = np.full(8, wall_s)
    run_dir = write_run(tmp_path / "r", metrics=m, status="running", rounds_planned=20)
    if age_s is not None:
        beat = (NOW - dt.timedelta(seconds=age_s)).isoformat(timespec="seconds")
        with h5py.File(run_dir / "run.h5", "a") as f:
            f.attrs["heartbeat"] = np.bytes_(beat.encode())
    return summarize(load_run(run_dir), now=NOW)


@pytest.mark.parametrize(
    ("age_s", "wall_s", "want"),
    [
        (30, 1.5, "running (round 8 written 30.0 s ago)"),
        (599, 1.5, "running (round 8 written 9 min 59 s ago)"),  # 10 minutes at least
        (3600, 1.5, "crashed or killed after round 8 (no heartbeat for 1 h 00 min)"),
        (2400, 600.0, "running (round 8 written 40 min 00 s ago)"),  # 5 slow rounds: 50 min
        (3600, 600.0, "crashed or killed after round 8 (no heartbeat for 1 h 00 min)"),
        (None, 1.5, "running (or killed, if no job is running it)"),  # written before heartbeats
    ],
)
def test_heartbeat_tells_running_from_crashed(tmp_path, age_s, wall_s, want):
    assert _running(tmp_path, age_s, wall_s).status_text == want


def test_stale_after_is_ten_minutes_or_five_slowest_rounds():
    assert stale_after(1.0) == 600.0 and stale_after(300.0) == 1500.0
    assert stale_after(NAN) == 600.0
