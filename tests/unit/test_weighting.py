"""federation.weighting: the server's averages weigh clients by samples or uniformly."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import ClientPlan, RoundContext
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.sim.cohort import sample_cohort
from hpc_fedprune.sim.setup import build_setup, to_device
from hpc_fedprune.training.local import LocalTrainer
from tests.unit.inprocess import run_inprocess

RUN = [
    "data.num_train=300",
    "data.num_test=50",
    "data.shape=[1, 8, 8]",
    "model.name=mlp",
    "model.mlp.hidden=[8]",
    "partition.num_clients=6",
    "partition.alpha=0.3",
    "partition.min_size=5",
    "federation.clients_per_round=3",
    "federation.rounds=1",
    "training.local_epochs=1",
    "training.batch_size=16",
    "runtime.seed=4",
]


def test_client_weight_rule():
    ctx = RoundContext(round=1, rounds=1, seed=0, lr=0.1, cohort_samples=40, cohort_size=4)
    assert ctx.client_weight(10) == 0.25 and ctx.client_weight(30) == 0.75
    uniform = RoundContext(
        round=1, rounds=1, seed=0, lr=0.1, cohort_samples=40, cohort_size=4, weighting="uniform"
    )
    assert uniform.client_weight(10) == uniform.client_weight(30) == 0.25


def trained_clients(config):
    """Each client of round 1 trained alone from the initial model (the loop not involved)."""
    setup = build_setup(config, 1, "cpu")
    x, y = to_device(setup.dataset.x_train, "cpu"), to_device(setup.dataset.y_train, "cpu")
    trainer = LocalTrainer(setup.model, config, setup.dataset.task, x, y)
    start = setup.model.flat.detach().clone()
    cohort = sample_cohort(config.runtime.seed, 1, config.partition.num_clients, 3)
    out = []
    for c in cohort.tolist():
        trainer.train(client=c, round_index=1, indices=setup.train_parts[c], start=start,
                      plan=ClientPlan(), lr=config.training.lr)  # fmt: skip
        out.append((trainer.model.flat.detach().double().clone(), len(setup.train_parts[c])))
    return out


@pytest.mark.parametrize("weighting", ["samples", "uniform"])
def test_fedavg_round_is_the_chosen_average(tmp_path, weighting):
    config = load_config(None, [*RUN, f"federation.weighting={weighting}"])
    clients = trained_clients(config)
    sizes = np.array([n for _, n in clients], dtype=np.float64)
    assert len(set(sizes)) > 1  # unequal clients: the two rules differ
    by_samples = sum(w * n for w, n in clients) / sizes.sum()
    uniform = sum(w for w, _ in clients) / len(clients)
    assert float((by_samples - uniform).abs().max()) > 1e-4
    expected = uniform if weighting == "uniform" else by_samples
    run = run_inprocess(tmp_path / weighting, *RUN, f"federation.weighting={weighting}")
    torch.testing.assert_close(torch.from_numpy(run["flat"]).double(), expected, rtol=0, atol=1e-6)


def test_bad_weighting_names_the_key():
    with pytest.raises(InputError, match=r"federation\.weighting: 'equal' is not one of"):
        load_config(None, ["federation.weighting=equal"])
