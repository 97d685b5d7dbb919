"""AutoFLIP: exploration scores, mask and the whole run are bit-identical on 1, 2 and 3 ranks."""

from __future__ import annotations

import h5py
import pytest

from tests.e2e.conftest import TINY, assert_same_results, read_run
from tests.helpers import run_mpi

AUTOFLIP = [
    "algorithm.name=autoflip",
    "algorithm.autoflip.epochs=3",
    "algorithm.autoflip.patience=2",
    "algorithm.autoflip.explorer_fraction=0.75",
    "training.optimizer=adam",
    "training.lr=0.01",
    "federation.server_momentum=0.9",
    "output.checkpoint_every=0",
    "output.progress=false",
]


def read_exploration(path) -> dict:
    with h5py.File(path, "r") as f:
        group = f["exploration"]
        return {"data": {k: group[k][...] for k in group}, "attrs": dict(group.attrs)}


@pytest.mark.mpi
@pytest.mark.timeout(300)
@pytest.mark.parametrize(
    "options, ranks",
    [
        ([], (1, 2, 3)),
        (
            [
                "algorithm.autoflip.base=shared",
                "algorithm.autoflip.structured=true",
                "algorithm.autoflip.refresh=true",
                "algorithm.autoflip.normalisation=robust",
            ],
            (1, 3),
        ),
    ],
    ids=["default", "shared_hybrid_refresh_robust"],
)
def test_exploration_and_run_do_not_depend_on_the_ranks(tmp_path, options, ranks):
    runs, explored = {}, {}
    for n in ranks:
        out = tmp_path / f"n{n}"
        args = ["-m", "hpc_fedprune", "run", "--out", str(out), *TINY, *AUTOFLIP, *options]
        proc = run_mpi(n, args, timeout=140)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        runs[n] = read_run(out / "run.h5")
        explored[n] = read_exploration(out / "run.h5")
    first = explored[1]
    assert len(first["data"]["clients"]) == 6  # round(0.75 * 8) explorers
    assert first["attrs"]["client_epochs"] > 0 and first["attrs"]["bytes_up"] > 0
    for n in ranks[1:]:
        assert runs[n]["attrs"]["world_size"] == n
        assert_same_results(runs[1], runs[n])
        assert explored[n]["attrs"] == first["attrs"]
        for name, values in first["data"].items():
            assert explored[n]["data"][name].tobytes() == values.tobytes(), name
    assert runs[1]["metrics"]["sparsity"][0] >= 0.3 - 1e-3
