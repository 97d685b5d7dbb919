"""Bad values of the method options: one line naming the key; the command exits 2."""

from __future__ import annotations

import pytest

from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.sim.setup import build_setup
from tests.e2e.conftest import cli

SMALL = ["data.num_train=60", "data.num_test=20", "partition.num_clients=2",
         "federation.clients_per_round=2", "partition.min_size=1", "model.name=mlp"]  # fmt: skip


@pytest.mark.parametrize(
    "override, key",
    [
        ("federation.weighting=equal", "federation.weighting"),
        ("algorithm.fedsparsify.vote=most", "algorithm.fedsparsify.vote"),
        ("algorithm.autoflip.reference=start", "algorithm.autoflip.reference"),
        ("algorithm.feddip.exclude=[biases]", "algorithm.feddip.exclude"),
        ("model.init=sparse", "model.init"),
        ("algorithm.random_mask.exclude_names=[nothing]", "algorithm.random_mask.exclude_names"),
    ],
)
def test_bad_value_is_one_line_naming_the_key(override, key):
    name = key.split(".")[1] if key.startswith("algorithm.") else "fedavg"
    with pytest.raises(InputError) as info:
        config = load_config(None, [*SMALL, f"algorithm.name={name}", override])
        build_setup(config, 1, "cpu")  # names that match no tensor fail here
    message = str(info.value)
    assert key in message and "\n" not in message


def test_the_command_exits_2_with_the_line(tmp_path):
    out = tmp_path / "run"
    proc = cli("run", "--out", str(out), *SMALL, "algorithm.name=feddst",
               "algorithm.feddst.exclude_names=[nothing]", timeout=120)  # fmt: skip
    assert proc.returncode == 2, proc.stdout + proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "algorithm.feddst.exclude_names" in lines[0]
    assert not (out / "run.h5").exists()
