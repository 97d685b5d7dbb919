"""The stateless baselines' defining rules: SNIP's score, FedProx's gradient, random and
one-shot masks (docs/methods.md)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import GlobalModel, RoundContext, make_algorithm
from hpc_fedprune.config import load_config
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.pruning import erk_counts, erk_densities, pruned_count, snip_mask
from hpc_fedprune.pruning.prunable import prunable_mask
from tests.unit.algo_driver import server_step


def lenet():
    """LeNet-5's flat layout (conv and linear layers of different shapes, for ERK)."""
    return FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0))


def algorithm(name, *overrides, preset="conv_linear_weights", model=None):
    model = model or lenet()
    config = load_config(None, [f"algorithm.name={name}", *overrides])
    prunable = prunable_mask(model.layout, preset)
    return make_algorithm(config, prunable, model.trainable_mask(), model.layout), model


def test_snip_mask_keeps_the_largest_grad_times_weight():
    w = torch.tensor([1.0, -2.0, 3.0, 0.5, 4.0, -1.0])
    g = torch.tensor([0.3, 0.1, -0.01, 2.0, 0.0, -0.2])  # |g*w| = .3 .2 .03 1 0 .2
    prunable = torch.tensor([True, True, True, True, True, False])
    mask = snip_mask(w, g, prunable, 0.6)  # prune floor(0.6 * 5) = 3 of the 5 prunable
    # lowest: 0 (idx 4), .03 (idx 2), .2 (idx 1); |w| alone would prune 3, 0, 1 instead
    assert mask.tolist() == [True, False, False, True, False, True]


def test_fedprox_adds_mu_times_displacement_on_parameters_and_nothing_on_buffers():
    mu = 0.3
    trainable = torch.tensor([True, True, True, False, False])
    config = load_config(None, ["algorithm.name=fedprox", f"algorithm.fedprox.mu={mu}"])
    prox = make_algorithm(config, torch.zeros(5, dtype=torch.bool), trainable)
    params = torch.tensor([1.0, -2.0, 0.5, 7.0, 3.0])
    anchor = torch.tensor([0.5, 1.0, 0.5, 1.0, -3.0])
    grad = torch.tensor([0.1, 0.2, 0.3, 0.4, 0.5])
    before = grad.clone()
    plan = prox.plan_client(
        ctx=RoundContext(1, 4, 0, 0.1, 100, 5), model=GlobalModel(anchor), client=0
    )
    plan.penalty.add_grad_(params, grad, anchor)
    expected = before + mu * (params - anchor) * trainable
    torch.testing.assert_close(grad, expected, rtol=0, atol=1e-7)
    assert torch.equal(grad[3:], before[3:])  # buffers untouched


def test_uniform_random_mask_meets_its_sparsity_and_is_keyed_by_the_seed():
    algo, model = algorithm("random_mask", "algorithm.random_mask.sparsity=0.8")
    mask = algo.initial_mask(weights=model.flat)
    n = int(algo.prunable.sum())
    assert int((algo.prunable & ~mask).sum()) == pruned_count(n, 0.8)
    assert mask[~algo.prunable].all()
    assert torch.equal(mask, algo.initial_mask(weights=model.flat))  # the same on every rank
    other, _ = algorithm("random_mask", "algorithm.random_mask.sparsity=0.8", "runtime.seed=1")
    assert not torch.equal(mask, other.initial_mask(weights=model.flat))


def test_erk_random_mask_meets_the_erk_per_layer_densities():
    algo, model = algorithm(
        "random_mask",
        "algorithm.random_mask.sparsity=0.9",
        "algorithm.random_mask.distribution=erk",
    )
    mask = algo.initial_mask(weights=model.flat)
    counts = erk_counts(model.layout, algo.prunable, 0.1)
    dens = erk_densities(model.layout, algo.prunable, 0.1)
    kept = {i.name: int(mask[i.slice].sum()) for i in model.layout if algo.prunable[i.slice].any()}
    assert kept == counts
    sizes = {i.name: i.numel for i in model.layout}
    for name, k in kept.items():
        assert abs(k / sizes[name] - dens[name]) <= 1 / sizes[name]
    assert len({round(k / sizes[n], 2) for n, k in kept.items()}) > 1  # not uniform
    assert sum(kept.values()) == int(algo.prunable.sum()) - pruned_count(
        int(algo.prunable.sum()), 0.9
    )


def test_oneshot_is_dense_before_t0_pruned_exactly_at_t0_and_fixed_after():
    algo, model = algorithm(
        "oneshot",
        "algorithm.oneshot.prune_round=2",
        "algorithm.oneshot.sparsity=0.7",
        "federation.rounds=4",
        preset="all_trainable",
    )
    n = int(algo.prunable.sum())
    current = GlobalModel(model.flat.clone(), algo.initial_mask(weights=model.flat))
    assert current.mask is None
    gen = torch.Generator().manual_seed(0)
    for rnd in range(1, 5):
        ctx = RoundContext(rnd, 4, 0, 0.1, 100, 5)
        delta = torch.randn(model.numel, generator=gen, dtype=torch.float64) * 0.01
        before = current.weights.double() + delta  # the FedAvg aggregate
        current = server_step(algo, ctx, {"delta": delta}, current).model
        if rnd < 2:
            assert current.mask is None
        elif rnd == 2:
            mask = current.mask
            assert int((algo.prunable & ~mask).sum()) == pruned_count(n, 0.7)
            agg = before.float().abs()
            # every kept prunable weight is at least as large as every pruned one
            assert agg[mask & algo.prunable].min() >= agg[~mask].max()
        else:
            assert torch.equal(current.mask, mask)
        if current.mask is not None:
            assert not current.weights[~current.mask].any()


def test_oneshot_rejects_a_prune_round_after_the_run():
    from hpc_fedprune.errors import InputError

    with pytest.raises(InputError, match="prune_round"):
        algorithm("oneshot", "algorithm.oneshot.prune_round=9", "federation.rounds=5")


def test_snip_never_prunes_norm_layers():
    model = FlatModel(build_model("resnet18_cifar", (3, 32, 32), 10, seed=0, width=4))
    algo, _ = algorithm(
        "snip", "algorithm.snip.prunable=all_trainable", model=model, preset="all_trainable"
    )
    norms = [i for i in model.layout if i.kind in ("norm_weight", "norm_bias")]
    assert norms and not any(algo.prunable[i.slice].any() for i in norms)
    grad = torch.ones(model.numel)
    mask = algo.initial_mask(weights=model.flat, gradient=lambda client, rng: grad)
    assert all(mask[i.slice].all() for i in norms)
    assert np.isclose(1 - float(mask[algo.prunable].float().mean()), 0.9, atol=1e-4)


def test_sparse_kaiming_rescales_each_layers_kept_weights_by_its_density():
    """model.init: sparse_kaiming: He-normal on the fan-in, zero biases, and a random
    sparse start multiplies layer l's kept weights by 1 / sqrt(d_l)."""
    from hpc_fedprune.pruning.sparse_init import rescale_kept_

    model = FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0, init="sparse_kaiming"))
    for info in model.layout:
        values = model.flat[info.slice]
        if info.kind == "bias":
            assert bool((values == 0).all())
        if info.name == "classifier.1.weight":  # fc1: 400 inputs, 48000 draws
            assert float(values.std()) == pytest.approx((2 / 400) ** 0.5, rel=0.02)
    algo, _ = algorithm(
        "random_mask", "algorithm.random_mask.sparsity=0.9", "model.init=sparse_kaiming",
        model=model,
    )  # fmt: skip
    before = model.flat.detach().clone()
    weights = before.clone()
    mask = algo.initial_mask(weights=weights)
    for info in model.layout:
        kept = mask[info.slice]
        density = int(kept.sum()) / info.numel
        factor = 1.0 if info.kind not in ("conv_weight", "linear_weight") else density**-0.5
        expected = before[info.slice][kept] * factor
        torch.testing.assert_close(weights[info.slice][kept], expected, rtol=1e-6, atol=0)
    assert torch.equal(weights[~mask], before[~mask])  # the loop's mask zeroes those
    # Hand example: a 2x2 weight keeping 1 of 4 doubles it; a dense tensor is left alone.
    from hpc_fedprune.models.flat import TensorInfo

    layout = (TensorInfo("a", (2, 2), 0, 4, "linear_weight", 0, True),
              TensorInfo("b", (2,), 4, 2, "linear_weight", 1, True))  # fmt: skip
    w = torch.tensor([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    rescale_kept_(w, torch.tensor([False, True, False, False, True, True]), layout)
    assert w.tolist() == [1.0, 4.0, 3.0, 4.0, 5.0, 6.0]
    # Without sparse_kaiming nothing is rescaled.
    plain, _ = algorithm("random_mask", "algorithm.random_mask.sparsity=0.9", model=model)
    again = before.clone()
    plain.initial_mask(weights=again)
    assert torch.equal(again, before)
