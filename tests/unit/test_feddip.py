"""FedDIP: error feedback, schedules by round, masks, penalty gradient (whole runs: e2e)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import ClientPlan, GlobalModel, RoundContext, make_algorithm
from hpc_fedprune.algorithms.feddip import feddip_schedule
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.pruning import erk_counts, kept_count, pruned_count
from hpc_fedprune.pruning.penalty import layer_slices, norm_penalty, norm_penalty_grad_
from hpc_fedprune.pruning.prunable import prunable_mask, tensors_in
from hpc_fedprune.training.local import LocalTrainer
from tests.unit.algo_driver import run_client, server_step, sums_of

SHAPE = (1, 12, 12)


def small_net(seed: int = 0) -> FlatModel:
    """A conv + linear net small enough for exact checks."""
    return FlatModel(build_model("small_cnn", SHAPE, 4, seed=seed))


def feddip(*overrides: str, model: FlatModel | None = None):
    config = load_config(None, ["algorithm.name=feddip", *overrides])
    model = model or small_net()
    prunable = prunable_mask(model.layout, config.algorithm.feddip.prunable)
    return make_algorithm(config, prunable, model.trainable_mask(), model.layout), model


def ctx(round_index: int, rounds: int = 30) -> RoundContext:
    return RoundContext(
        round=round_index, rounds=rounds, seed=7, lr=0.1, cohort_samples=10, cohort_size=2
    )


# ---------------------------------------------------------------- error feedback
def test_error_feedback_moves_masked_weights_seen_as_zero_in_the_forward_pass():
    model = small_net()
    config = load_config(None, ["training.local_steps=3", "training.batch_size=8"])
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(16, *SHAPE, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    trainer = LocalTrainer(model, config, "classification", x, y)
    start = model.flat.detach().clone()
    prunable = prunable_mask(model.layout, "conv_linear_weights")
    mask = ~(prunable & (torch.arange(model.numel) % 2 == 0))  # prune every other weight
    seen = []
    conv = next(m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d))
    conv.register_forward_pre_hook(lambda mod, inp: seen.append(mod.weight.detach().clone()))

    def train_under_forward_mask(trainer, cfg):
        trainer.train(
            client=0,
            round_index=1,
            indices=np.arange(16),
            start=start,
            plan=ClientPlan(forward_mask=mask),
            lr=0.1,
        )

    train_under_forward_mask(trainer, config)
    conv_mask = mask[model.layout[0].slice].view_as(conv.weight)
    assert len(seen) == 3 and all(bool((w[~conv_mask] == 0).all()) for w in seen)
    pruned = ~mask
    assert bool((model.flat[pruned] != start[pruned]).any()), "masked weights must keep moving"

    # One plain SGD step by hand: w - lr * grad(loss at w * M) equals the trainer's step.
    config1 = load_config(None, ["training.local_steps=1", "training.batch_size=16"])
    ref = small_net()
    ref.load_(start * mask)
    loss = torch.nn.functional.cross_entropy(ref.module(x), y)
    loss.backward()
    expected = start[: ref.num_params] - 0.1 * ref.grad[: ref.num_params]
    trainer = LocalTrainer(model, config1, "classification", x, y)
    train_under_forward_mask(trainer, config1)
    torch.testing.assert_close(model.flat[: ref.num_params], expected, rtol=0, atol=1e-6)


# ---------------------------------------------------------------- schedules by round
def test_penalty_coefficient_by_round_and_mode():
    algo, _ = feddip("federation.rounds=1000")
    assert [algo.coefficient(r) for r in (1, 50)] == [0.0, 0.0]  # the paper's t = round - 1
    assert algo.coefficient(51) == algo.coefficient(100) == pytest.approx(5e-4)
    assert algo.coefficient(951) == algo.coefficient(1000) == pytest.approx(9.7368e-4, rel=1e-4)
    short, _ = feddip("federation.rounds=4")  # T < 20 segments: clamped, not a crash
    assert [short.coefficient(r) for r in (1, 2)] == [0.0, 5e-4]
    assert short.coefficient(4) < 1e-3
    feddp, _ = feddip("federation.rounds=1000", "algorithm.feddip.mode=feddp")
    assert feddp.coefficient(1000) == 0.0 and feddp.slices == ()


def test_cubic_schedule_and_reconfiguration_rounds():
    algo, _ = feddip("federation.rounds=30")
    assert [r for r in range(1, 31) if algo.reconfigures(r)] == [1, 6, 11, 16, 21, 26]
    sched = algo.schedule  # called with t = round - 1; s_T at the last re-pruning round 26
    assert sched(0) == 0.5 and sched(25) == 0.9
    assert sched(10) == pytest.approx(0.9 - 0.4 * (1 - 10 / 25) ** 3)
    cfg = load_config(None, ["algorithm.feddip.s_T=0.95", "algorithm.feddip.end_round=1001"])
    authors = feddip_schedule(cfg.algorithm.feddip, 1000)  # (1 - t / T) ** 3, T = 1000
    assert authors(250) == pytest.approx(0.760, abs=1e-3)
    assert authors(995) == pytest.approx(0.95, abs=1e-6) and authors(995) < 0.95


# ---------------------------------------------------------------- masks
def test_round_one_erk_masks_differ_between_clients_and_meet_the_density():
    algo, model = feddip("algorithm.feddip.s_0=0.6")
    empty = GlobalModel(model.flat.clone(), None)
    masks = []
    for client in (0, 1):
        plan = algo.plan_client(ctx=ctx(1), model=empty, client=client)
        assert plan.train_mask is None  # error feedback, no projection
        masks.append(plan.forward_mask)
    prunable = algo.prunable
    n = int(prunable.sum())
    counts = erk_counts(model.layout, prunable, 0.4)
    for m in masks:
        assert int((m & prunable).sum()) == kept_count(n, 0.4)
        assert bool(m[~prunable].all())
        for info, pos in tensors_in(model.layout, prunable):
            assert int(m[pos].sum()) == counts[info.name]
    assert not torch.equal(masks[0], masks[1])
    again = algo.plan_client(ctx=ctx(1), model=empty, client=0)  # keyed by (seed, round, client)
    assert torch.equal(again.forward_mask, masks[0])


def test_server_nested_and_free_masks():
    """Nested: the old mask is kept out; free: a large weight outside the old mask returns."""
    for regrowth, upload in (("nested", "masked"), ("free", "dense")):
        algo, model = feddip(
            "algorithm.feddip.reconfig_interval=1",
            "federation.rounds=10",
            f"algorithm.feddip.regrowth={regrowth}",
            f"algorithm.feddip.upload={upload}",
        )
        weights = model.flat.detach().clone()
        first = server_step(
            algo,
            ctx(1, 10),
            {"delta": torch.zeros(model.numel, dtype=torch.float64)},
            GlobalModel(weights, None),
        ).model
        pruned = int((algo.prunable & ~first.mask).sum())
        assert pruned == pruned_count(int(algo.prunable.sum()), 0.5)
        gone = int((algo.prunable & ~first.mask).nonzero()[0])
        delta = torch.zeros(model.numel, dtype=torch.float64)
        delta[gone] = 10.0  # the clients' dense uploads moved a pruned weight far
        second = server_step(algo, ctx(2, 10), {"delta": delta}, first).model
        assert bool(second.mask[gone]) == (regrowth == "free")
        assert bool((second.weights[~second.mask] == 0).all())
        if regrowth == "nested":
            assert not bool((second.mask & ~first.mask).any())


def test_free_regrowth_needs_dense_uploads():
    with pytest.raises(InputError, match="upload=dense"):
        feddip("algorithm.feddip.regrowth=free")


# ---------------------------------------------------------------- penalty
def test_penalty_gradient_matches_autograd_and_handles_a_zero_layer():
    model = small_net(seed=1)
    prunable = prunable_mask(model.layout, "conv_linear_weights")
    slices = layer_slices(model.layout, prunable)
    params = model.flat[: model.num_params].detach().clone()
    gen = torch.Generator().manual_seed(1)
    params *= torch.rand(params.shape, generator=gen) > 0.5  # the masked weights w * M
    params[slices[-1]] = 0.0  # a fully pruned layer: no gradient, no NaN
    w = params.clone().requires_grad_(True)
    norm_penalty(w, slices[:-1], 1e-3).backward()
    grad = torch.ones_like(params)
    norm_penalty_grad_(grad, params, slices, 1e-3)
    torch.testing.assert_close(grad, 1.0 + w.grad, rtol=1e-5, atol=1e-9)
    assert bool(torch.isfinite(grad).all())
    # Through the plan: the round's coefficient.
    algo, _ = feddip("federation.rounds=20", model=model)
    glob = GlobalModel(model.flat.clone(), prunable.clone())
    plan = algo.plan_client(ctx=ctx(3, 20), model=glob, client=0)
    hooked = torch.zeros_like(params)
    plan.penalty.add_grad_(params, hooked, params)
    expected = torch.zeros_like(params)
    norm_penalty_grad_(expected, params, slices, algo.coefficient(3))
    assert plan.penalty.lam == algo.coefficient(3) > 0 and torch.equal(hooked, expected)


# ---------------------------------------------------------------- one local step, by hand
def test_one_local_step_with_penalty_and_weight_decay_under_the_forward_mask():
    """w - lr (grad L(w*M) + lambda (w*M)_l / ||(w*M)_l|| + wd w), every term by hand."""
    lr, wd = 0.1, 0.01
    model = small_net(seed=2)
    algo, _ = feddip("federation.rounds=20", "algorithm.feddip.lambda_max=0.5", model=model)
    lam = algo.coefficient(3)
    assert lam > 0
    config = load_config(
        None, ["training.local_steps=1", "training.batch_size=8", f"training.weight_decay={wd}"]
    )
    gen = torch.Generator().manual_seed(3)
    x, y = torch.randn(8, *SHAPE, generator=gen), torch.randint(0, 4, (8,), generator=gen)
    start = model.flat.detach().clone()
    prunable = algo.prunable
    mask = ~(prunable & (torch.rand(model.numel, generator=gen) < 0.5))
    plan = algo.plan_client(ctx=ctx(3, 20), model=GlobalModel(start, mask), client=0)
    assert torch.equal(plan.forward_mask, mask) and plan.train_mask is None
    # Reference: autograd of the data loss at w * M, the penalty written out per tensor.
    ref = small_net(seed=2)
    ref.load_(start * mask)
    torch.nn.functional.cross_entropy(ref.module(x), y).backward()
    n = ref.num_params
    grad = ref.grad[:n].clone()
    masked = (start * mask)[:n]
    for info in model.layout:
        if bool(prunable[info.slice].any()):
            w = masked[info.slice]
            grad[info.slice] += lam * w / torch.linalg.vector_norm(w)
    expected = start[:n] - lr * (grad + wd * start[:n])
    trainer = LocalTrainer(model, config, "classification", x, y)
    trainer.train(client=0, round_index=3, indices=np.arange(8), start=start, plan=plan, lr=lr)
    torch.testing.assert_close(model.flat[:n], expected, rtol=0, atol=1e-6)
    # The masked coordinates moved too (error feedback), by -lr (grad + wd w) there.
    assert bool((model.flat[:n][~mask[:n]] != start[:n][~mask[:n]]).any())


def test_ablations_reg_only_and_feddp():
    reg, model = feddip("federation.rounds=20", "algorithm.feddip.mode=reg_only")
    weights = model.flat.detach().clone()
    plan = reg.plan_client(ctx=ctx(3, 20), model=GlobalModel(weights, None), client=0)
    assert plan.forward_mask is None and plan.train_mask is None  # no pruning at all
    assert plan.penalty.lam == reg.coefficient(3) > 0
    # the penalty acts on the dense weights: lambda w_l / ||w_l||
    grad = torch.zeros(model.num_params)
    plan.penalty.add_grad_(weights[: model.num_params], grad, weights)
    first = model.layout[0]
    w = weights[first.slice]
    torch.testing.assert_close(grad[first.slice], reg.coefficient(3) * w / w.norm())
    delta = torch.randn(model.numel, dtype=torch.float64) * 0.1
    out = server_step(reg, ctx(1, 20), {"delta": delta}, GlobalModel(weights, None)).model
    assert out.mask is None  # round 1 is a re-pruning round, but reg_only never prunes
    torch.testing.assert_close(out.weights, (weights.double() + delta).float())
    dp, _ = feddip("federation.rounds=20", "algorithm.feddip.mode=feddp", model=model)
    mask = dp.prunable.clone().logical_not_() | (torch.arange(model.numel) % 3 == 0)
    plan = dp.plan_client(ctx=ctx(3, 20), model=GlobalModel(weights, mask), client=0)
    assert plan.penalty is None and torch.equal(plan.forward_mask, mask)


# ---------------------------------------------------------------- round 1: holder average
def test_round_one_averages_each_weight_over_its_holders():
    algo, model = feddip("algorithm.feddip.s_0=0.6", "federation.rounds=10")
    c1 = RoundContext(round=1, rounds=10, seed=7, lr=0.1, cohort_samples=6, cohort_size=3)
    start = model.flat.detach().clone()
    glob = GlobalModel(start, None)
    gen = torch.Generator().manual_seed(5)
    updates, masks, locals_ = [], [], []
    for client in range(3):
        local = start + 0.1 * torch.randn(model.numel, generator=gen)
        plan, update = run_client(algo, c1, glob, client, local)
        masks.append(plan.forward_mask.numpy())
        locals_.append(local.numpy().astype(np.float64))  # masked in place: w * M_c
        updates.append(update)
    assert set(algo.round_channels(c1)) == {"kept_weight", "kept_share"}
    p = np.array([1.0, 2.0, 3.0]) / 6
    sums = sums_of(algo, updates, p.tolist(), c1)
    out = server_step(algo, c1, sums, glob).model
    # Independent reference in numpy: the holder average, the untouched start elsewhere.
    share = sum(pc * m for pc, m in zip(p, masks))
    total = sum(pc * w for pc, w in zip(p, locals_))
    held = share > 0
    merged = start.numpy().astype(np.float64)
    merged[held] = total[held] / share[held]
    prunable = algo.prunable.numpy()
    n = int(prunable.sum())
    order = np.argsort(np.abs(merged[prunable]), kind="stable")
    keep = np.ones(model.numel, dtype=bool)
    keep[np.flatnonzero(prunable)[order[: pruned_count(n, 0.6)]]] = False
    assert out.mask.numpy().tolist() == keep.tolist()
    np.testing.assert_allclose(out.weights.numpy(), merged * keep, rtol=0, atol=1e-6)
    # Zero-filled averaging (the old rule) would have cut differently.
    zero_filled = total.copy()
    order0 = np.argsort(np.abs(zero_filled[prunable]), kind="stable")
    keep0 = np.ones(model.numel, dtype=bool)
    keep0[np.flatnonzero(prunable)[order0[: pruned_count(n, 0.6)]]] = False
    assert (keep0 != keep).sum() > 0.1 * n
    # Later rounds: the mean update only.
    assert set(algo.round_channels(ctx(2, 10))) == {"delta"}


def test_dense_uploads_keep_the_plain_average_in_round_one():
    algo, _ = feddip("algorithm.feddip.upload=dense")
    assert set(algo.round_channels(ctx(1))) == {"delta"}


def test_server_momentum_is_cleared_at_pruned_positions():
    algo, model = feddip(
        "federation.rounds=10",
        "federation.server_momentum=0.9",
        "algorithm.feddip.reconfig_interval=1",
        "algorithm.feddip.upload=dense",
        "algorithm.feddip.regrowth=free",
    )
    weights = model.flat.detach().clone()
    server = algo.new_server(weights=weights, mask=None)
    gen = torch.Generator().manual_seed(0)
    delta = torch.randn(model.numel, generator=gen, dtype=torch.float64) * 0.1
    out = algo.server_step(ctx=ctx(1, 10), sums={"delta": delta},
                           model=GlobalModel(weights, None), server=server).model  # fmt: skip
    pruned = ~out.mask
    assert bool(pruned.any())
    assert bool((server.momentum[pruned] == 0).all())
    torch.testing.assert_close(server.momentum[out.mask], delta[out.mask])
    # Dense uploads keep moving pruned weights; their momentum stays zero.
    out2 = algo.server_step(ctx=ctx(2, 10), sums={"delta": delta}, model=out,
                            server=server).model  # fmt: skip
    assert bool((server.momentum[~out2.mask] == 0).all())
