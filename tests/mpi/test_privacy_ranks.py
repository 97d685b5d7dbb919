"""Membership-inference results are the same bits on 1 and 3 ranks, in a run and after it."""

from __future__ import annotations

import h5py
import numpy as np
import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

# Small batches and three shadow models, so that every rank evaluates and trains some.
PRIVATE = [
    "privacy.enabled=true",
    "privacy.holdout=0.3",
    "privacy.rounds=[2]",
    "privacy.samples=160",
    "privacy.shadow_models=3",
    "privacy.shadow_epochs=3",
    "federation.eval_batch_size=30",
    "algorithm.name=fedsparsify",
    "output.checkpoint_every=0",
]


def read_privacy(path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {k: f["privacy"][k][...] for k in f["privacy"]}


def assert_same_privacy(a: dict, b: dict) -> None:
    assert set(a) == set(b)
    for name in a:
        assert np.array_equal(a[name], b[name]), f"/privacy/{name} differs: {a[name]} vs {b[name]}"


@pytest.mark.mpi
@pytest.mark.timeout(300)
def test_privacy_rows_do_not_depend_on_the_number_of_ranks(tmp_path):
    runs, rows, command_rows = {}, {}, {}
    for n in (1, 3):
        out = tmp_path / f"n{n}"
        proc = run_mpi(n, ["-m", "hpc_fedprune", "run", "--out", str(out), *TINY, *PRIVATE])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = read_run(out / "run.h5")
        rows[n] = read_privacy(out / "run.h5")
        proc = run_mpi(n, ["-m", "hpc_fedprune", "privacy", str(out)])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        command_rows[n] = read_privacy(out / "privacy.h5")
    assert_same_results(runs[1], runs[3])
    assert list(rows[1]["round"]) == [2, 2, 3, 3]
    assert_same_privacy(rows[1], rows[3])
    assert_same_privacy(command_rows[1], command_rows[3])
    # The command re-creates the run's own last attack on the saved model.
    last = rows[1]["round"] == 3
    assert_same_privacy({k: v[last] for k, v in rows[1].items()}, command_rows[1])
