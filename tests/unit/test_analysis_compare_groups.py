"""compare's seed groups, labels and plot files; analyze's formats and skipped plots."""

from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pytest

from hpc_fedprune.analysis import load_run, run_analyze, run_compare
from hpc_fedprune.analysis.groups import group_series, mean_std, seed_groups
from hpc_fedprune.analysis.labels import distinct_labels, method_name
from hpc_fedprune.analysis.plots import parse_formats
from hpc_fedprune.errors import InputError
from tests.helpers import REPO
from tests.unit.runfile_factory import default_metrics, write_run

matplotlib = pytest.importorskip("matplotlib")

SPARSE = {"algorithm": {"fedsparsify": {"variant": "global", "final_sparsity": 0.9}}}


def _read(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def _with_final(accuracy: float, rounds: int = 8) -> dict[str, np.ndarray]:
    m = default_metrics(rounds)
    m["test_accuracy"][-1] = accuracy
    return m


@pytest.fixture
def svg_text(monkeypatch: pytest.MonkeyPatch) -> None:
    """SVG files keep their text as text (not glyph paths), so tests can read titles."""
    monkeypatch.setitem(matplotlib.rcParams, "svg.fonttype", "none")


def test_runs_that_differ_only_in_the_seed_make_one_row(tmp_path: Path, capsys) -> None:
    seeds = [
        write_run(tmp_path / f"s{seed}", seed=seed, config=SPARSE, metrics=_with_final(acc))
        for seed, acc in [(0, 0.80), (1, 0.84), (2, 0.88)]
    ]
    dense = write_run(tmp_path / "dense", algorithm="fedavg", masks={}, seed=0)
    out = tmp_path / "cmp"
    assert run_compare([*map(str, seeds), str(dense)], str(out)) == 0
    table = capsys.readouterr().out
    # Mean 0.84 and sample standard deviation sqrt((0.04^2 + 0 + 0.04^2) / 2) = 0.04.
    assert "84.00 ± 4.00 %" in table
    assert "0,1,2" in table and "s0 +2" in table
    assert "sample standard deviation (ddof 1)" in table

    groups = _read(out / "compare_groups.csv")
    assert [(g["label"], g["runs"], g["seeds"]) for g in groups] == [
        ("FedSparsify-Global", "3", "0,1,2"),
        ("FedAvg", "1", "0"),
    ]
    assert float(groups[0]["final_mean"]) == pytest.approx(0.84)
    assert float(groups[0]["final_std"]) == pytest.approx(0.04)
    assert groups[1]["final_std"] == ""  # one seed: no spread
    per_run = _read(out / "compare.csv")
    assert [(r["run"], r["group"], r["seed"]) for r in per_run] == [
        ("s0", "1", "0"),
        ("s1", "1", "1"),
        ("s2", "1", "2"),
        ("dense", "2", "0"),
    ]

    capsys.readouterr()
    run_compare([*map(str, seeds), str(dense)], str(tmp_path / "apart"), groups=False)
    assert len(_read(tmp_path / "apart" / "compare.csv")) == 4
    assert not (tmp_path / "apart" / "compare_groups.csv").exists()
    assert "±" not in capsys.readouterr().out


def test_same_config_and_same_seed_is_not_averaged(tmp_path: Path, capsys) -> None:
    a = write_run(tmp_path / "a", seed=3, config=SPARSE)
    b = write_run(tmp_path / "b", seed=3, config=SPARSE)
    run_compare([str(a), str(b)], str(tmp_path / "cmp"))
    printed = capsys.readouterr().out
    assert "share a config and a seed" in printed
    assert not (tmp_path / "cmp" / "compare_groups.csv").exists()


def test_seed_groups_keep_order_and_ignore_bookkeeping() -> None:
    base = {"algorithm": {"name": "fedavg"}, "runtime": {"seed": 0, "device": "cpu"}}
    moved = {"algorithm": {"name": "fedavg"}, "runtime": {"seed": 1, "device": "cuda"}}
    other = {"algorithm": {"name": "snip"}, "runtime": {"seed": 0}}
    groups, notes = seed_groups([base, other, moved, {}], [0, 0, 1, 5], ["a", "b", "c", "d"])
    assert groups == [[0, 2], [1], [3]] and notes == []
    assert seed_groups([base, moved], [0, 1], ["a", "b"], enabled=False)[0] == [[0], [1]]


def test_mean_std_by_hand() -> None:
    assert mean_std([1.0, 3.0]) == (2.0, pytest.approx(np.sqrt(2.0)), 2)
    mean, sd, n = mean_std([0.5, float("nan")])
    assert (mean, n) == (0.5, 1) and np.isnan(sd)


def test_group_curve_is_the_mean_over_common_rounds(tmp_path: Path) -> None:
    long = default_metrics(8)
    short = default_metrics(6)  # still running: rounds 7 and 8 are not drawn
    short["test_accuracy"] = short["test_accuracy"] + 0.1
    runs = [
        load_run(write_run(tmp_path / "l", metrics=long)),
        load_run(write_run(tmp_path / "s", metrics=short, status="running")),
    ]
    s = group_series(runs, "X", "test_accuracy")
    np.testing.assert_array_equal(s.rounds, np.arange(1, 7))
    # Rounds 2, 4, 6 are evaluated: 0.5 + 0.05 r and 0.1 more; mean +0.05, sd 0.1/sqrt(2).
    np.testing.assert_allclose(s.values[1::2], [0.65, 0.75, 0.85])
    np.testing.assert_allclose(s.spread[1::2], np.full(3, 0.1 / np.sqrt(2)))
    assert np.isnan(s.values[0])
    assert s.label == "X (mean ± sd, 2 seeds)"


def test_method_names_and_distinct_labels() -> None:
    def cfg(name, **opts):
        return {"algorithm": {"name": name, name: opts}}

    assert method_name(cfg("fedsparsify", variant="local"), "?") == "FedSparsify-Local"
    assert method_name(cfg("topk", error_feedback=False), "?") == "Top-k"
    assert method_name(cfg("random_mask", distribution="erk"), "?") == "Random ERK mask"
    momentum = {"algorithm": {"name": "fedavg"}, "federation": {"server_momentum": 0.9}}
    assert method_name(momentum, "?") == "FedAvgM"
    assert method_name({}, "fedprox") == "FedProx"  # no config: from the attribute

    a = cfg("fedsparsify", final_sparsity=0.9)
    b = cfg("fedsparsify", final_sparsity=0.95)
    c = cfg("fedsparsify", final_sparsity=0.95)
    labels = distinct_labels(["FedSparsify-Global"] * 3, [a, b, c], ["ra", "rb", "rc"])
    # b and c share every setting: their folders tell them apart.
    assert labels == [
        "FedSparsify-Global, final_sparsity=0.9",
        "FedSparsify-Global, final_sparsity=0.95 (rb)",
        "FedSparsify-Global, final_sparsity=0.95 (rc)",
    ]


def test_user_labels_titles_and_legends(tmp_path: Path, capsys, svg_text) -> None:
    a = write_run(tmp_path / "run-17", config=SPARSE)
    b = write_run(tmp_path / "run-18", algorithm="fedavg", masks={})
    out = tmp_path / "cmp"
    run_compare([str(a), str(b)], str(out), formats="svg")
    svg = (out / "compare_accuracy_vs_round.svg").read_text()
    assert "FedSparsify-Global" in svg and "FedAvg" in svg
    assert "run-17" not in svg  # method names, not folder names

    run_compare([str(a), str(b)], str(out), formats="svg", labels="sparse 90 %,dense")
    svg = (out / "compare_accuracy_vs_round.svg").read_text()
    assert "sparse 90 %" in svg and "dense" in svg
    assert [r["label"] for r in _read(out / "compare.csv")] == ["sparse 90 %", "dense"]
    with pytest.raises(InputError, match="--labels: 1 label"):
        run_compare([str(a), str(b)], str(out), labels="only one")

    run_analyze(str(a), str(tmp_path / "an"), formats="svg")
    svg = (tmp_path / "an" / "accuracy_vs_round.svg").read_text()
    assert "FedSparsify-Global on mnist (lenet5)" in svg


def test_every_format_is_a_real_file_of_its_kind(tmp_path: Path, capsys) -> None:
    run_dir = write_run(tmp_path / "r", masks={})
    run_analyze(str(run_dir), str(tmp_path / "a"), formats="png,pdf,svg")
    magic = {"png": b"\x89PNG", "pdf": b"%PDF", "svg": b"<?xml"}
    for stem in ("accuracy_vs_round", "accuracy_vs_bytes"):
        for fmt, head in magic.items():
            assert (tmp_path / "a" / f"{stem}.{fmt}").read_bytes().startswith(head), (stem, fmt)
    assert parse_formats(" PDF, png ,pdf") == ("pdf", "png")
    for bad in ("jpg", "", "png,gif"):
        with pytest.raises(InputError, match="--format"):
            parse_formats(bad)


def test_no_empty_plots(tmp_path: Path, capsys) -> None:
    blank = default_metrics(3)
    blank["test_accuracy"] = np.full(3, np.nan)  # running, no evaluation yet
    never = write_run(tmp_path / "never", metrics=blank, masks={}, status="running")
    run_analyze(str(never), str(tmp_path / "a"))
    assert "no round evaluated yet" in capsys.readouterr().out
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["metrics.csv"]

    evaluated = write_run(tmp_path / "ok", config=SPARSE)
    run_compare([str(never), str(evaluated)], str(tmp_path / "c"))
    printed = capsys.readouterr().out
    assert "FedSparsify-Global" in printed
    assert "no evaluated round yet, left out of the plots" in printed
    assert (tmp_path / "c" / "compare_accuracy_vs_round.png").exists()

    run_compare([str(never)], str(tmp_path / "c2"))
    assert "no run has an evaluated round yet: no plots" in capsys.readouterr().out
    assert [p.name for p in (tmp_path / "c2").iterdir()] == ["compare.csv"]


def test_round_axes_have_integer_ticks() -> None:
    from matplotlib.figure import Figure

    from hpc_fedprune.analysis.plots import _round_axis

    fig = Figure()
    ax = fig.add_subplot()
    ax.plot([1, 2, 3], [0.1, 0.2, 0.3])
    _round_axis(ax.xaxis)
    fig.draw_without_rendering()
    ticks = [t for t in ax.get_xticks() if 1 <= t <= 3]
    assert ticks == [1, 2, 3]


def test_default_compare_folder_stays_out_of_git(
    tmp_path: Path, capsys, monkeypatch: pytest.MonkeyPatch
) -> None:
    run_dir = write_run(tmp_path / "r")
    monkeypatch.chdir(tmp_path)
    run_compare([str(run_dir)])
    assert (tmp_path / "compare" / ".gitignore").read_text().splitlines()[-1] == "*"
    assert "/compare/" in (REPO / ".gitignore").read_text().splitlines()
