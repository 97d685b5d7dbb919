"""Top-k sparsification with error feedback: the residual carries exactly the unsent mass,
k entries travel, ties go to the lower index, DGC's momentum correction and warm-up."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import GlobalModel, RoundContext, make_algorithm
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.pruning.topk import keep_count, largest_k, topk_step, warmup_density
from tests.unit.algo_driver import run_client


def vectors(n=4000, seed=0):
    g = torch.Generator().manual_seed(seed)
    update = torch.randn(n, generator=g) * 1e-2
    residual = torch.randn(n, generator=g) * 1e-3
    return update, residual


@pytest.mark.parametrize("value_dtype", ["float32", "float16", "bfloat16"])
def test_residual_carries_exactly_the_unsent_mass(value_dtype):
    update, residual = vectors()
    k = 40
    sent, support, new_residual, _ = topk_step(update, residual, None, k, value_dtype=value_dtype)
    accumulated = update + residual  # what the client owes the server, in float32
    # Exact in float32 and in float64: nothing is lost or invented, whatever the wire.
    assert torch.equal(sent + new_residual, accumulated)
    assert torch.equal(sent.double() + new_residual.double(), accumulated.double())
    assert int(support.sum()) == k
    assert torch.equal(sent[~support], torch.zeros(len(update) - k))
    assert torch.equal(new_residual[~support], accumulated[~support])
    # The sent values are exactly representable on the wire.
    if value_dtype != "float32":
        wire = getattr(torch, value_dtype)
        assert torch.equal(sent.to(wire).to(torch.float32), sent)
        assert new_residual[support].abs().max() > 0  # the rounding error stays behind
    else:
        assert torch.equal(new_residual[support], torch.zeros(k))


def test_the_k_largest_magnitudes_are_sent():
    update, residual = vectors(seed=1)
    sent, support, _, _ = topk_step(update, residual, None, 25)
    accumulated = (update + residual).abs()
    assert accumulated[support].min() >= accumulated[~support].max()
    assert torch.equal(support, sent != 0)


def test_ties_go_to_the_lower_index():
    values = torch.tensor([1.0, -3.0, 0.5, 3.0, -3.0, 2.0])
    assert largest_k(values, 2).tolist() == [False, True, False, True, False, False]
    assert largest_k(values, 3).tolist() == [False, True, False, True, True, False]


def test_without_error_feedback_nothing_is_kept():
    update, _ = vectors()
    sent, support, residual, momentum = topk_step(update, None, None, 10)
    assert residual is None and momentum is None
    assert torch.equal(sent[support], update[support])


def test_momentum_correction_by_hand():
    # u = m u + d; v = r + u; send top-1 of v; sent entries of u and v cleared.
    m = 0.5
    u = torch.tensor([1.0, 0.0, 2.0])
    r = torch.tensor([0.0, 0.25, -4.0])
    d = torch.tensor([1.0, -1.0, 1.0])
    sent, support, residual, momentum = topk_step(d, r, u, 1, beta=m)
    # u' = [1.5, -1, 2]; v = [1.5, -0.75, -2] -> index 2 is sent
    assert support.tolist() == [False, False, True]
    assert sent.tolist() == [0.0, 0.0, -2.0]
    assert residual.tolist() == [1.5, -0.75, 0.0]
    assert momentum.tolist() == [1.5, -1.0, 0.0]


def test_counts_and_warm_up_schedule():
    assert keep_count(1000, 0.01) == 10
    assert keep_count(61706, 0.01) == 61706 - int(0.99 * 61706)
    assert keep_count(10, 1e-6) == 1  # at least one entry
    assert [warmup_density(t, 0.01, 4) for t in range(1, 7)] == [
        0.25,
        0.0625,
        0.015625,
        0.01,  # 0.25**4 = 0.0039 is below the target: the target wins
        0.01,
        0.01,
    ]
    assert warmup_density(1, 0.5, 3) == 0.5


def make(*overrides):
    config = load_config(None, ["algorithm.name=topk", *overrides])
    n = 50
    prunable = torch.ones(n, dtype=torch.bool)
    return make_algorithm(config, prunable, prunable.clone()), n


def ctx(rnd):
    return RoundContext(rnd, 5, 0, 0.1, cohort_samples=30, cohort_size=2)


def test_a_client_resumes_from_the_residual_it_left():
    algo, n = make("algorithm.topk.density=0.1")
    assert algo.client_state_arrays == {"residual": (np.float32, n)}
    weights = torch.zeros(n)
    model = GlobalModel(weights)
    g = torch.Generator().manual_seed(2)
    first = torch.randn(n, generator=g)  # first participation: zero residual (state None)
    _, up = run_client(algo, ctx(1), model, 7, first.clone(), state=None)
    state = up.state
    assert torch.equal(up.message + torch.from_numpy(state["residual"]), first)
    assert torch.equal(up.channels["delta"], up.message.double())  # the loop weights it
    assert int(up.support.sum()) == 5 and not up.shared_support
    # Next participation: the update adds to what was left.
    second = torch.randn(n, generator=g)
    _, up2 = run_client(algo, ctx(3), model, 7, second.clone(), state=state)
    left = torch.from_numpy(up2.state["residual"])
    assert torch.equal(up2.message + left, second + torch.from_numpy(state["residual"]))


def test_options_are_checked():
    algo, n = make("algorithm.topk.error_feedback=false")
    assert algo.client_state_arrays == {}
    algo, n = make("algorithm.topk.momentum=0.9")
    assert set(algo.client_state_arrays) == {"residual", "momentum"}
    with pytest.raises(InputError, match="error_feedback"):
        make("algorithm.topk.momentum=0.9", "algorithm.topk.error_feedback=false")
    with pytest.raises(InputError, match="density"):
        load_config(None, ["algorithm.name=topk", "algorithm.topk.density=0"])


def test_buffers_are_never_selected_and_travel_as_fedavg_averages_them():
    """A BatchNorm model: k counts trainable entries only, the running statistics'
    change is sent whole beside the selection, never enters the residual, and the server
    averages it like FedAvg."""
    from hpc_fedprune.exchange.accounting import upload_info
    from hpc_fedprune.models import FlatModel
    from tests.unit.algo_driver import server_step, sums_of

    torch.manual_seed(0)  # construction only; the values below are set explicitly
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.1), torch.nn.ReLU(),
        torch.nn.Flatten(), torch.nn.Linear(4 * 4 * 4, 3),
    )  # fmt: skip
    model = FlatModel(net)
    trainable = model.trainable_mask()
    buffers = ~trainable
    assert int(buffers.sum()) == 8  # running mean and variance of 4 channels
    config = load_config(None, ["algorithm.name=topk", "algorithm.topk.density=0.05"])
    algo = make_algorithm(config, trainable.clone(), trainable, model.layout)
    n_train = int(trainable.sum())
    k = keep_count(n_train, 0.05)
    gen = torch.Generator().manual_seed(1)
    weights = torch.randn(model.numel, generator=gen)
    glob = GlobalModel(weights, None)
    c = RoundContext(round=1, rounds=3, seed=0, lr=0.1, cohort_samples=4, cohort_size=2)
    updates, steps = [], []
    for client in range(2):
        step = torch.randn(model.numel, generator=gen) * 0.01
        step[buffers] = 100.0 + client  # far larger than any parameter's change
        steps.append(step)
        _, update = run_client(algo, c, glob, client, weights + step)
        support = update.support
        assert int(support.sum()) == k and not bool(support[buffers].any())
        assert bool((update.message[buffers] == 0).all())
        moved = ((weights + step) - weights)[buffers]
        assert torch.equal(update.side[0], moved)
        assert torch.equal(update.channels["delta"][buffers], moved.double())
        residual = torch.from_numpy(update.state["residual"])
        assert bool((residual[buffers] == 0).all())
        owed = (weights + step - weights)[trainable]
        assert torch.equal(residual[trainable] + update.message[trainable], owed)
        info = upload_info(update, "float32")
        assert info.total_bytes >= 4 * (k + 8)  # the selection and the 8 statistics
        updates.append(update)
    out = server_step(algo, c, sums_of(algo, updates, [0.25, 0.75]), glob).model
    expected = weights[buffers].double() + sum(
        p * ((weights + s) - weights)[buffers].double() for p, s in zip([0.25, 0.75], steps)
    )
    torch.testing.assert_close(out.weights[buffers], expected.float(), rtol=1e-7, atol=0)
