"""analyze and compare on runs the simulator wrote."""

from __future__ import annotations

import pytest

from .conftest import TINY, api_run, cli


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    base = tmp_path_factory.mktemp("analyze")
    dense, sparse = base / "fedavg", base / "fedsparsify"
    api_run(dense, *TINY)
    api_run(sparse, *TINY, "algorithm.name=fedsparsify", "algorithm.fedsparsify.variant=local")
    return dense, sparse


@pytest.mark.timeout(400)
def test_analyze_a_pruned_run(two_runs, tmp_path):
    _, sparse = two_runs
    out = tmp_path / "a"
    proc = cli("analyze", str(sparse), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "fedsparsify" in proc.stdout and "finished" in proc.stdout
    for name in ("metrics.csv", "mask_stats.csv", "mask_overall.csv", "client_agreement.csv"):
        assert (out / name).exists(), name
    assert list(out.glob("*.png")), "no plots"


@pytest.mark.timeout(400)
def test_compare_two_runs(two_runs, tmp_path):
    out = tmp_path / "c"
    proc = cli("compare", *map(str, two_runs), "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    assert "FedAvg" in proc.stdout and "FedSparsify-Local" in proc.stdout
    assert (out / "compare.csv").exists()


def test_analyze_refuses_a_non_run_file(tmp_path):
    import h5py

    path = tmp_path / "other.h5"
    with h5py.File(path, "w") as f:
        f["x"] = [1, 2, 3]
    proc = cli("analyze", str(path))
    assert proc.returncode == 2
    assert len(proc.stderr.strip().splitlines()) == 1
