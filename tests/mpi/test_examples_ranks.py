"""The plug-in examples (examples/) run bit-identically on 1 and 2 ranks and do what they
say; a bad plug-in under MPI is one line from rank 0 and exit status 2."""

from __future__ import annotations

import contextlib
import io

import h5py
import numpy as np
import pytest

from hpc_fedprune.cli import main
from hpc_fedprune.comm.world import World
from tests.e2e.conftest import assert_same_results, read_run
from tests.helpers import REPO, registries_restored, run_mpi

EXAMPLES = ("recut_fedavg", "tiny_model", "blobs_data")


def run_one_rank(out, config: str) -> None:
    """The example on one rank, in this process, from the repository root (the examples
    name their plug-in files relative to it)."""
    with registries_restored(), pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)
        mp.setattr(World, "finalize", lambda self: None)
        with contextlib.redirect_stdout(io.StringIO()):
            code = main(["run", "--config", config, "--out", str(out), "output.progress=false"])
    assert code == 0


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Each example once on one rank (in process) and once under mpiexec on two."""
    base = tmp_path_factory.mktemp("examples")
    out = {}
    for name in EXAMPLES:
        config = f"examples/{name}.yaml"
        run_one_rank(base / f"{name}-1", config)
        d2 = base / f"{name}-2"
        proc = run_mpi(2, ["-m", "hpc_fedprune", "run", "--config", config, "--out", str(d2)])
        assert proc.returncode == 0, proc.stdout + proc.stderr
        out[name] = (read_run(base / f"{name}-1" / "run.h5"), read_run(d2 / "run.h5"))
        out[name][0]["path"] = base / f"{name}-1" / "run.h5"
    return out


@pytest.mark.mpi
@pytest.mark.timeout(600)
@pytest.mark.parametrize("name", EXAMPLES)
def test_example_identical_on_two_ranks(runs, name):
    one, two = runs[name]
    assert two["attrs"]["world_size"] == 2
    assert_same_results(one, two)


@pytest.mark.mpi
@pytest.mark.timeout(600)
def test_recut_prunes_every_second_round_to_the_linear_target(runs):
    """4 rounds, every 2, sparsity 0.6: cuts after rounds 2 and 4, to 0.3 and 0.6 of the
    prunable set (every trainable weight of the 64-16-10 MLP: 1210 entries)."""
    one, _ = runs["recut_fedavg"]
    with h5py.File(one["path"], "r") as f:
        assert list(f["masks/rounds"][...]) == [2, 4]
    n = 64 * 16 + 16 + 16 * 10 + 10
    expected = [0.0, np.floor(0.3 * n) / n, np.floor(0.3 * n) / n, np.floor(0.6 * n) / n]
    np.testing.assert_allclose(one["metrics"]["sparsity"], expected, rtol=0, atol=1e-6)
    flat = np.frombuffer(one["flat"], dtype=np.float32)
    assert flat.size == n and np.count_nonzero(flat) == n - np.floor(0.6 * n)


@pytest.mark.mpi
@pytest.mark.timeout(600)
def test_custom_model_and_data_set_are_the_plugins(runs):
    # tiny_tanh (model.options hidden 20) on 1x8x8 inputs, 10 classes: 64*20 + 20 + 20*10 + 10.
    assert len(np.frombuffer(runs["tiny_model"][0]["flat"], np.float32)) == 1510
    # mlp [16] on blobs' 1x16 inputs, 4 classes: 16*16 + 16 + 16*4 + 4 parameters.
    assert len(np.frombuffer(runs["blobs_data"][0]["flat"], np.float32)) == 340
    assert runs["blobs_data"][0]["attrs"]["dataset"] == "blobs"


@pytest.mark.mpi
@pytest.mark.timeout(120)
def test_duplicate_registration_under_mpi_is_one_line(tmp_path):
    plugin = tmp_path / "dup.py"
    plugin.write_text(
        "from hpc_fedprune.registry import MODELS\nMODELS.register('x')(1)\n"
        "MODELS.register('x')(2)\n"
    )
    proc = run_mpi(
        2, ["-m", "hpc_fedprune", "run", "--out", str(tmp_path / "r"), "--plugin", str(plugin)]
    )
    assert proc.returncode == 2
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert lines == [f"error: plug-in {plugin}: model 'x' registered twice"]
    assert not (tmp_path / "r").exists()
