"""PruneFL's and FedDST's defining rules (docs/methods.md, PruneFL and FedDST)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import ClientUpdate, GlobalModel, RoundContext, make_algorithm
from hpc_fedprune.algorithms.merge import nnz_average
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.exchange.accounting import upload_info
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.models.flat import TensorInfo
from hpc_fedprune.pruning import erk_counts, pruned_count
from hpc_fedprune.pruning.dst import drop_and_regrow, erk_reprune
from hpc_fedprune.pruning.importance import importance_mask, layer_time_vector
from hpc_fedprune.pruning.prunable import prunable_mask
from hpc_fedprune.pruning.schedules import Cubic
from tests.unit.algo_driver import finish, readjust, run_client, server_step, sums_of


def lenet():
    return FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0))


def algorithm(name, *overrides, model=None):
    model = model or lenet()
    config = load_config(None, [f"algorithm.name={name}", *overrides])
    prunable = prunable_mask(model.layout, "conv_linear_weights")
    return make_algorithm(config, prunable, model.trainable_mask(), model.layout), model


def ctx(rnd, rounds=30, samples=100, size=2):
    return RoundContext(
        round=rnd, rounds=rounds, seed=0, lr=0.1, cohort_samples=samples, cohort_size=size
    )


def per_tensor_kept(mask, algo, model):
    return {
        i.name: int((mask[i.slice] & algo.prunable[i.slice]).sum())
        for i in model.layout
        if algo.prunable[i.slice].any()
    }


def two_tensors():
    """A flat model of two 2x3 weight tensors (12 entries), all prunable."""
    layout = (
        TensorInfo("a", (2, 3), 0, 6, "linear_weight", 0, True),
        TensorInfo("b", (2, 3), 6, 6, "linear_weight", 1, True),
    )
    return layout, torch.ones(12, dtype=torch.bool)


# ------------------------------------------------------------------ PruneFL


def test_prunefl_selection_regrows_a_pruned_weight_with_a_large_squared_gradient():
    prunable = torch.ones(6, dtype=torch.bool)
    sq = torch.tensor([0.5, 0.1, 9.0, 0.2, 0.3, 0.05], dtype=torch.float64)
    old = torch.tensor([True, True, False, True, True, False])  # entry 2 pruned before
    mask = importance_mask(sq, prunable, 0.5)
    assert mask.tolist() == [True, False, True, False, True, False]
    assert mask[2] and not old[2]  # it came back: the old mask plays no part


def test_prunefl_server_regrows_at_zero_and_follows_the_cubic_schedule():
    algo, model = algorithm(
        "prunefl",
        "algorithm.prunefl.reconfig_interval=3",
        "algorithm.prunefl.initial_sparsity=0.5",
        "algorithm.prunefl.final_sparsity=0.9",
        "federation.rounds=10",
    )
    n = int(algo.prunable.sum())
    gen = torch.Generator().manual_seed(0)
    weights = torch.randn(model.numel, generator=gen)
    old = importance_mask(weights.double() ** 2, algo.prunable, 0.5)
    weights.mul_(old)
    back = int(torch.nonzero(~old)[0])  # a pruned entry with a huge squared gradient
    sq = torch.rand(model.numel, generator=gen, dtype=torch.float64) * algo.prunable
    sq[back] = 1e3
    sums = {"delta": torch.zeros(model.numel, dtype=torch.float64), "sq_grad": sq}
    # The schedule ends at the last reconfiguration (round 9 of 10).
    assert algo.schedule == Cubic(t0=0, s_i=0.5, s_f=0.9, t_end=9)
    out = server_step(algo, ctx(2), sums, GlobalModel(weights.clone(), old)).model
    assert torch.equal(out.mask, old)  # not a reconfiguration round
    for rnd in (3, 6, 9):
        out = server_step(algo, ctx(rnd), sums, GlobalModel(weights.clone(), old)).model
        assert int((algo.prunable & ~out.mask).sum()) == pruned_count(n, algo.schedule(rnd))
        assert out.mask[back] and out.weights[back] == 0
        assert torch.equal(out.mask, importance_mask(sq, algo.prunable, algo.schedule(rnd)))
    assert algo.schedule(9) == 0.9


def test_prunefl_layer_times_trade_importance_for_time():
    layout, prunable = two_tensors()
    sq = torch.full((12,), 1.0, dtype=torch.float64)
    sq[6:] = 4.0  # tensor b matters 4x more per weight ...
    assert importance_mask(sq, prunable, 0.5)[6:].all()
    time = layer_time_vector(layout, prunable, (1.0, 8.0))  # ... but costs 8x the time
    mask = importance_mask(sq, prunable, 0.5, time)
    assert mask[:6].all() and not mask[6:].any()
    with pytest.raises(InputError, match="layer_times"):
        layer_time_vector(layout, prunable, (1.0,))


def test_prunefl_reconfiguration_uploads_the_squared_gradient_and_counts_its_bytes():
    algo, model = algorithm("prunefl", "algorithm.prunefl.reconfig_interval=2")
    mask = importance_mask(torch.rand(model.numel, dtype=torch.float64), algo.prunable, 0.8)
    weights = torch.randn(model.numel) * mask
    glob = GlobalModel(weights, mask)
    grad = torch.randn(model.numel)
    uploads, plans = {}, {}
    for rnd in (1, 2):
        c = ctx(rnd, samples=40)
        plans[rnd] = algo.plan_client(ctx=c, model=glob, client=0)
        given = grad if plans[rnd].needs_gradient else None
        _, uploads[rnd] = run_client(algo, c, glob, 0, weights.clone(), gradient=given)
    assert not plans[1].needs_gradient and plans[2].needs_gradient
    assert "sq_grad" not in uploads[1].channels
    expected = (grad.double() * algo.prunable) ** 2
    torch.testing.assert_close(uploads[2].channels["sq_grad"], expected, rtol=0, atol=0)
    # The server sums p_c g^2 (here p_c = 10 / 40), to the channel's 2**-32 resolution.
    summed = sums_of(algo, [uploads[2]], [0.25])["sq_grad"]
    torch.testing.assert_close(summed, expected * 0.25, rtol=0, atol=2.0**-32)
    plain, with_grad = (upload_info(uploads[r], "float32").total_bytes for r in (1, 2))
    # The gradient travels over the whole prunable set: 4 bytes per prunable entry more.
    assert with_grad - plain >= 4 * int(algo.prunable.sum())


def test_prunefl_rejects_layer_times_of_the_wrong_length():
    with pytest.raises(InputError, match="layer_times"):
        algorithm("prunefl", "algorithm.prunefl.layer_times=[1.0, 2.0]")


# ------------------------------------------------------------------ FedDST


def test_drop_and_regrow_by_magnitude_and_gradient_on_a_hand_example():
    layout, prunable = two_tensors()
    mask = torch.tensor([1, 1, 1, 1, 0, 0, 1, 1, 0, 0, 0, 0], dtype=torch.bool)
    w = torch.tensor([0.5, -0.1, 0.3, -0.2, 0, 0, 0.9, -0.4, 0, 0, 0, 0]) * mask
    g = torch.tensor([0.0, 0.0, 0.0, 0.0, 0.7, -0.8, 0.0, 0.0, 0.1, -0.3, 0.2, 0.05])
    new = drop_and_regrow(w, g, mask, layout, prunable, 0.5)
    # a: 4 active, drop floor(0.5 * 4) = 2 smallest |w| (idx 1, 3), regrow largest |g| (5, 4)
    # b: 2 active, drop 1 (idx 7), regrow 1 (idx 9: |g| = 0.3)
    assert new.tolist() == [
        *[True, False, True, False, True, True],
        *[True, False, False, True, False, False],
    ]


def test_cosine_fraction_and_readjustment_rounds():
    algo, model = algorithm(
        "feddst",
        "algorithm.feddst.alpha=0.5",
        "algorithm.feddst.readjust_interval=5",
        "federation.rounds=20",
    )
    for t in range(21):
        assert algo.fraction(t) == pytest.approx(0.25 * (1 + math.cos(math.pi * t / 20)))
    assert [r for r in range(1, 21) if algo.readjusts(r)] == [5, 10, 15]  # 20: alpha_t = 0


def test_feddst_keeps_erk_densities_and_averages_over_holders():
    algo, model = algorithm(
        "feddst",
        "algorithm.feddst.sparsity=0.8",
        "algorithm.feddst.alpha=0.5",
        "algorithm.feddst.readjust_interval=1",
        "federation.rounds=4",
    )
    counts = erk_counts(model.layout, algo.prunable, 0.2)
    mask = algo.initial_mask(weights=model.flat)
    assert per_tensor_kept(mask, algo, model) == counts
    weights = model.flat.detach().clone() * mask
    gen = torch.Generator().manual_seed(1)
    for rnd in (1, 2, 3):  # every round readjusts (alpha_t > 0 before round 4)
        c = ctx(rnd, rounds=4, samples=30, size=3)
        glob = GlobalModel(weights, mask)
        uploads, client_masks = [], []
        for client, samples in enumerate((5, 10, 15)):
            local = (weights + 0.01 * torch.randn(weights.shape, generator=gen)) * mask
            grad = torch.randn(weights.shape, generator=gen)
            plan = algo.plan_client(ctx=c, model=glob, client=client)
            assert plan.readjust is not None and not plan.groupable
            plan = readjust(plan, local, grad)
            local += 0.01 * torch.randn(weights.shape, generator=gen) * plan.train_mask
            update = finish(algo, c, glob, client, plan, local)
            own = update.client_mask
            assert per_tensor_kept(own, algo, model) == counts  # clients keep ERK counts
            assert bool((own & ~mask).any())  # the mask moved
            client_masks.append((own, local.clone(), samples))
            uploads.append(update)
            assert update.side and update.side[0] is own  # the mask travels
        sums = sums_of(algo, uploads, [5 / 30, 10 / 30, 15 / 30])
        out = server_step(algo, c, sums, glob).model
        assert per_tensor_kept(out.mask, algo, model) == counts  # ERK after every readjustment
        # Every kept weight is the sample-weighted mean over the clients that hold it.
        num = sum(m.double() * w.double() * s for m, w, s in client_masks)
        den = sum(m.double() * s for m, _, s in client_masks)
        expect = torch.where(den > 0, num / den.clamp_min(1e-30), 0.0) * out.mask
        torch.testing.assert_close(out.weights.double(), expect, rtol=0, atol=1e-6)
        weights, mask = out.weights, out.mask


def test_average_over_holders_hand_example():
    layout, prunable = two_tensors()
    a = torch.tensor([1, 1, 0, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    b = torch.tensor([1, 0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0], dtype=torch.bool)
    wa = torch.tensor([2.0, 4.0, 0, 0, 0, 0, 1.0, 0, 0, 0, 0, 0])
    wb = torch.tensor([6.0, 0, -3.0, 0, 0, 0, 5.0, 0, 0, 0, 0, 0])
    pa, pb = 0.25, 0.75
    kept_weight = (wa * a * pa + wb * b * pb).double()
    kept_share = (a * pa + b * pb).double()
    mean = nnz_average(kept_weight, kept_share)
    # 0: both hold it: .25 * 2 + .75 * 6 = 5; 1: only a: 4; 2: only b: -3; 6: 4; others 0
    assert mean.tolist() == [5.0, 4.0, -3.0, 0, 0, 0, 4.0, 0, 0, 0, 0, 0]
    keep = erk_reprune(mean, kept_share > 0, layout, prunable, {"a": 2, "b": 1})
    assert keep.tolist() == [True, True, False, False, False, False] + [True] + [False] * 5


def test_min_votes_excludes_weights_held_by_too_few_clients():
    layout, prunable = two_tensors()
    mean = torch.tensor([9.0, 1.0, 2.0, 0, 0, 0, 3.0, 7.0, 0, 0, 0, 0], dtype=torch.float64)
    votes = torch.tensor([1, 2, 2, 0, 0, 0, 2, 1, 0, 0, 0, 0], dtype=torch.float64)
    mask = erk_reprune(mean, votes > 1, layout, prunable, {"a": 2, "b": 1})
    # entry 0 (|9|) and 7 (|7|) are held by one client only: the others win
    assert np.flatnonzero(mask.numpy()).tolist() == [1, 2, 6]


def test_feddst_uploads_values_over_the_global_mask_outside_readjustments():
    algo, model = algorithm("feddst", "algorithm.feddst.readjust_interval=10")
    mask = algo.initial_mask(weights=model.flat)
    weights = model.flat.detach().clone() * mask
    glob = GlobalModel(weights, mask)
    plan, up = run_client(algo, ctx(3), glob, 0, weights.clone())
    assert plan.readjust is None and plan.groupable and up.client_mask is None
    assert isinstance(up, ClientUpdate) and up.side == () and up.shared_support
    info = upload_info(up, "float32")
    assert info.method == "values" and info.count == int(mask.sum())


# ------------------------------------------------------------------ the loop's hooks


def test_client_gradient_uses_a_keyed_batch_and_leaves_the_local_model_alone():
    from hpc_fedprune.rng import Stream, numpy_rng
    from hpc_fedprune.sim.setup import build_setup, to_device
    from hpc_fedprune.training.gradients import GRADIENT_KEY, client_gradient, initial_trainer
    from hpc_fedprune.training.local import LocalTrainer

    sizes = ["data.num_train=200", "partition.num_clients=4", "federation.clients_per_round=2"]
    config = load_config(None, [*sizes, "model.name=mlp", "runtime.seed=5"])
    setup = build_setup(config, 1, "cpu")
    ds, model = setup.dataset, setup.model
    x, y = to_device(ds.x_train, "cpu"), to_device(ds.y_train, "cpu")
    trainer = LocalTrainer(model, config, ds.task, x, y)
    parts = setup.train_parts[2]
    local = model.flat
    before = local.clone()
    grad = client_gradient(trainer, local, parts, 5, 3, 2)
    assert torch.equal(local, before)
    rng = numpy_rng(5, Stream.CLIENT, 3, 2, GRADIENT_KEY)
    assert torch.equal(grad, trainer.first_batch_gradient(before, parts, rng))
    other = client_gradient(trainer, local, parts, 5, 4, 2)  # another round: another batch
    assert not torch.equal(grad, other)
    # The initial-training callable trains in place, differently for each pass key.
    train = initial_trainer(trainer, setup.train_parts, config)
    a, b = before.clone(), before.clone()
    train(2, 1, a, None)
    train(2, 2, b, None)
    assert not torch.equal(a, before) and not torch.equal(a, b)


# ------------------------------------------------------------------ FedDST: regrown weights train


def one_tensor():
    """A 4x5 linear weight, all prunable: 20 entries."""
    return (TensorInfo("a", (4, 5), 0, 20, "linear_weight", 0, True),), torch.ones(
        20, dtype=torch.bool
    )


@pytest.mark.parametrize("strong_low", [True, False])
def test_survivors_are_the_regrown_weights_with_the_largest_trained_magnitude(strong_low):
    """Two clients regrow disjoint sets, one with large gradients, one with small; the
    regrown weights train through the last epoch (one SGD step here), so the server keeps
    the strongly grown ones, wherever they sit in the tensor."""
    from hpc_fedprune.algorithms.feddst import FedDST

    layout, prunable = one_tensor()
    config = load_config(None, ["algorithm.name=feddst", "algorithm.feddst.sparsity=0.5",
                                "algorithm.feddst.alpha=0.25", "algorithm.feddst.decay_end=1000",
                                "algorithm.feddst.readjust_interval=1"])  # fmt: skip
    algo = FedDST(config, prunable, prunable, layout)
    assert algo.counts == {"a": 10}
    mask = torch.zeros(20, dtype=torch.bool)
    mask[5:15] = True  # 0-4 and 15-19 inactive
    weights = torch.zeros(20)
    weights[5:15] = torch.tensor([0.01, 0.02, 1.0, 1.1, 1.2, 1.3, 1.4, 1.5, 1.6, 1.7])
    glob = GlobalModel(weights.clone(), mask)
    c = ctx(1, rounds=1000, samples=2, size=2)
    low, high = [0, 1], [18, 19]
    strong, weak = (low, high) if strong_low else (high, low)
    lr, updates = 0.1, []
    for client, (where, g) in enumerate(((strong, 5.0), (weak, 0.5))):
        grad = torch.zeros(20)
        grad[where] = torch.tensor([g, -g])
        plan = algo.plan_client(ctx=c, model=glob, client=client)
        local = weights.clone()
        plan = readjust(plan, local, grad)  # drops 5, 6 (smallest), regrows `where` at 0
        assert plan.train_mask.nonzero().squeeze(1).tolist() == sorted([*where, *range(7, 15)])
        local -= lr * grad * plan.train_mask  # the last epoch trains the regrown weights
        updates.append(finish(algo, c, glob, client, plan, local))
    out = server_step(algo, c, sums_of(algo, updates, [0.5, 0.5]), glob).model
    kept = out.mask.nonzero().squeeze(1).tolist()
    assert kept == sorted([*strong, *range(7, 15)])  # never an index order
    torch.testing.assert_close(out.weights[strong], -lr * torch.tensor([5.0, -5.0]))


def test_readjustment_runs_before_the_last_epoch_and_regrown_weights_train():
    from hpc_fedprune.algorithms import ClientPlan
    from hpc_fedprune.models import FlatModel, build_model
    from hpc_fedprune.rng import Stream, numpy_rng
    from hpc_fedprune.training.gradients import GRADIENT_KEY
    from hpc_fedprune.training.local import LocalTrainer

    model = FlatModel(build_model("mlp", (1, 6, 6), 3, seed=0, hidden=(8,)))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(40, 1, 6, 6, generator=gen), torch.randint(0, 3, (40,), generator=gen)
    indices = np.arange(40)
    first = model.layout[0]
    mask = torch.ones(model.numel, dtype=torch.bool)
    mask[first.offset : first.offset + 20] = False  # 20 pruned weights of the first layer
    start = model.flat.detach().clone() * mask
    seen = []

    def rule(weights, gradient, current):
        seen.append((weights.clone(), gradient.clone(), current.clone()))
        new = current.clone()
        new[first.offset : first.offset + 10] = True  # regrow 10
        new[first.offset + 30 : first.offset + 35] = False  # drop 5
        return new

    for overrides, before_steps in (
        (["training.local_epochs=2"], 4),
        (["training.local_steps=7"], 3),
    ):
        seen.clear()
        config = load_config(None, ["training.batch_size=10", *overrides])
        trainer = LocalTrainer(model, config, "classification", x, y)
        plan = ClientPlan(train_mask=mask, readjust=rule, groupable=False)
        result = trainer.train(client=3, round_index=2, indices=indices, start=start, plan=plan,
                               lr=0.1)  # fmt: skip
        trained = model.flat.detach().clone()
        assert len(seen) == 1
        weights, grad, current = seen[0]
        assert torch.equal(current, mask)
        # The weights after exactly `before_steps` steps under the old mask (4 = the
        # first of 2 epochs of 4 batches; 7 steps: before the last epoch's 4 steps).
        steps_only = load_config(None, ["training.batch_size=10",
                                        f"training.local_steps={before_steps}"])  # fmt: skip
        alone = LocalTrainer(model, steps_only, "classification", x, y)
        alone.train(client=3, round_index=2, indices=indices, start=start,
                    plan=ClientPlan(train_mask=mask), lr=0.1)  # fmt: skip
        torch.testing.assert_close(weights, model.flat.detach(), rtol=0, atol=0)
        rng = numpy_rng(0, Stream.CLIENT, 2, 3, GRADIENT_KEY)
        assert torch.equal(grad, alone.first_batch_gradient(weights, indices, rng))
        new = rule(weights, grad, current)
        assert torch.equal(result.train_mask, new)
        assert bool((trained[~new] == 0).all())
        regrown = first.offset + torch.arange(10)
        assert bool((trained[regrown] != 0).all())  # they trained before the upload


def test_equal_magnitudes_are_broken_by_a_keyed_draw_not_by_position():
    from hpc_fedprune.rng import Stream, numpy_rng

    layout = (TensorInfo("a", (10, 10), 0, 100, "linear_weight", 0, True),)
    prunable = torch.ones(100, dtype=torch.bool)
    values = torch.ones(100, dtype=torch.float64)  # every weight ties
    eligible = torch.ones(100, dtype=torch.bool)

    def keep(rnd):
        rng = numpy_rng(0, Stream.TIES, rnd, 0)
        mask = erk_reprune(values, eligible, layout, prunable, {"a": 10}, rng)
        return mask.nonzero().squeeze(1).tolist()

    first, again, other = keep(3), keep(3), keep(4)
    assert len(first) == 10 and first == again  # keyed: the same on every rank and rerun
    assert first != other
    assert first not in (list(range(10)), list(range(90, 100)))
    assert max(first) - min(first) > 20  # spread over the tensor, not a block
