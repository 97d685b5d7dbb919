"""Grouped training: each client of a group trains as it would alone; groups ignore ranks."""

from __future__ import annotations

import dataclasses
import platform
import sys

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import ClientPlan, GlobalModel, RoundContext, make_algorithm
from hpc_fedprune.config import load_config
from hpc_fedprune.errors import InputError
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.pruning.prunable import prunable_mask
from hpc_fedprune.sim.cohort import form_groups, rank_units, schedule_groups
from hpc_fedprune.training.batches import client_batches, pack_group
from hpc_fedprune.training.clients import ClientTrainer
from hpc_fedprune.training.grouped import GroupTrainer, group_blocker, keep_freed_memory
from hpc_fedprune.training.local import LocalTrainer
from hpc_fedprune.training.stacked import stacked_forward, stacked_plan

SHAPE = (3, 10, 10)


def setup(*overrides: str, model: str = "small_cnn"):
    config = load_config(None, ["training.batch_size=8", "training.local_epochs=2", *overrides])
    net = FlatModel(build_model(model, SHAPE, 4, seed=1))
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(120, *SHAPE, generator=gen)
    y = torch.randint(0, 4, (120,), generator=gen)
    prunable = prunable_mask(net.layout, "conv_linear_weights")
    algorithm = make_algorithm(config, prunable, net.trainable_mask(), net.layout)
    return config, net, x, y, algorithm


# Clients of 21, 8, 5 and 13 samples: partial last batches, and step counts of 6, 2, 2, 4.
PARTS = [np.arange(0, 21), np.arange(30, 38), np.arange(50, 55), np.arange(70, 83)]


def plans_for(algorithm, start, mask, round_index=3):
    """Each client's plan from the algorithm, as the loop asks for it."""
    ctx = RoundContext(round_index, 4, 0, 0.05, cohort_samples=47, cohort_size=len(PARTS))
    model = GlobalModel(start, mask)
    return [algorithm.plan_client(ctx=ctx, model=model, client=c) for c in range(len(PARTS))]


def alone_and_grouped(
    *overrides: str,
    mask_density: float | None = None,
    path: str = "stacked",
    round_index: int = 3,
):
    """Train PARTS one at a time and as one group from the same start; return both."""
    config, net, x, y, algorithm = setup(*overrides)
    start = net.flat.detach().clone()
    mask = None
    if mask_density is not None:
        mask = torch.rand(net.numel, generator=torch.Generator().manual_seed(2)) < mask_density
    plans = plans_for(algorithm, start, mask, round_index)
    local = LocalTrainer(net, config, "classification", x, y)
    alone, losses = [], []
    for c, part in enumerate(PARTS):
        r = local.train(client=c, round_index=3, indices=part, start=start, plan=plans[c], lr=0.05)
        alone.append(net.flat.detach().clone())
        losses.append(r)
    group = GroupTrainer(net, config, "classification", x, y)
    assert group.plan is not None  # small_cnn has the stacked form; "vmap" switches it off
    if path == "vmap":
        group.plan = None
    weights, results = group.train(
        clients=list(range(len(PARTS))),
        round_index=3,
        parts=PARTS,
        start=start,
        plans=plans,
        lr=0.05,
    )
    return torch.stack(alone), losses, weights, results, start, mask


@pytest.mark.parametrize(
    "overrides",
    [
        [],
        ["training.momentum=0.9", "training.weight_decay=0.01"],
        ["algorithm.name=fedprox", "algorithm.fedprox.mu=0.5", "training.local_steps=5"],
    ],
    ids=["sgd", "momentum_wd", "fedprox_steps"],
)
@pytest.mark.parametrize("path", ["stacked", "vmap"])
def test_each_grouped_client_follows_its_alone_trajectory(overrides, path):
    alone, alone_res, grouped, group_res, start, _ = alone_and_grouped(*overrides, path=path)
    moved = (alone - start).abs().amax(dim=1)
    assert (moved > 1e-3).all()  # every client trained
    # Same batches, same steps: the weights agree to float rounding of different kernels.
    torch.testing.assert_close(grouped, alone, rtol=1e-5, atol=2e-6)
    for a, g in zip(alone_res, group_res, strict=True):
        assert (g.steps, g.samples) == (a.steps, a.samples)
        assert g.loss == pytest.approx(a.loss, rel=1e-5)


@pytest.mark.parametrize(
    ("name", "shape", "outputs"),
    [("mlp", (3, 6, 6), 1), ("lenet5", (1, 28, 28), 4), ("cnn", (3, 20, 20), 4)],
)
def test_stacked_forward_is_each_clients_own_forward(name, shape, outputs):
    nets = [build_model(name, shape, outputs, seed=s) for s in range(3)]
    plan = stacked_plan(nets[0])
    assert plan is not None
    weights = {
        n: torch.stack([dict(m.named_parameters())[n] for m in nets]).detach()
        for n, _ in nets[0].named_parameters()
    }
    x = torch.randn(3, 5, *shape, generator=torch.Generator().manual_seed(1))
    out = stacked_forward(plan, weights, x)
    for j, net in enumerate(nets):
        torch.testing.assert_close(out[j].reshape(5, -1), net(x[j]).reshape(5, -1))


def test_stacked_plan_refuses_what_it_cannot_batch():
    assert stacked_plan(build_model("resnet18_cifar", (3, 32, 32), 4, seed=0)) is None
    net = build_model("small_cnn", (3, 10, 10), 4, seed=0)
    net.features[0] = torch.nn.Conv2d(3, 33, 3, groups=3)
    assert stacked_plan(net) is None


def test_train_mask_keeps_pruned_weights_zero_in_a_group():
    alone, _, grouped, _, _, mask = alone_and_grouped(mask_density=0.5)
    assert (grouped[:, ~mask] == 0).all()
    torch.testing.assert_close(grouped, alone, rtol=1e-5, atol=2e-6)


@pytest.mark.parametrize("round_index", [1, 2], ids=["own_masks", "global_mask_penalty"])
def test_error_feedback_plans_train_in_a_group_as_alone(round_index):
    """FedDIP: forward masks (each client's own in round 1) and the norm penalty."""
    overrides = ("algorithm.name=feddip", "federation.rounds=4", "training.weight_decay=0.01")
    density = None if round_index == 1 else 0.6
    alone, _, grouped, _, start, mask = alone_and_grouped(
        *overrides, mask_density=density, round_index=round_index
    )
    config, net, *_, algorithm = setup(*overrides)
    plans = plans_for(algorithm, start, mask, round_index)
    forward = [p.forward_mask for p in plans]
    assert all(p.train_mask is None for p in plans)
    if round_index == 1:
        assert not torch.equal(forward[0], forward[1])  # each client its own mask
    else:
        assert plans[0].penalty is not None and plans[0].penalty.lam > 0
    for j, m in enumerate(forward):  # masked weights kept moving (error feedback)
        assert bool((grouped[j][~m] != start[~m]).any())
    torch.testing.assert_close(grouped, alone, rtol=1e-5, atol=2e-6)


def test_client_batches_replays_the_local_trainer_order():
    config, net, x, y, algorithm = setup("training.local_steps=0")
    batches = client_batches(7, 2, 5, PARTS[0], batch_size=8, local_epochs=2)
    assert [len(b) for b in batches] == [8, 8, 5, 8, 8, 5]
    assert sorted(np.concatenate(batches[:3]).tolist()) == PARTS[0].tolist()
    # A different client key gives a different order.
    other = client_batches(7, 2, 6, PARTS[0], batch_size=8, local_epochs=2)
    assert not np.array_equal(np.concatenate(batches), np.concatenate(other))
    steps = client_batches(7, 2, 5, PARTS[0], batch_size=8, local_epochs=9, local_steps=4)
    assert [b.tolist() for b in steps] == [b.tolist() for b in batches[:4]]
    dropped = client_batches(7, 2, 5, PARTS[0], batch_size=8, local_epochs=1, drop_last=True)
    assert [len(b) for b in dropped] == [8, 8]


def test_pack_group_pads_with_zero_weight_and_deactivates_finished_clients():
    packed = pack_group([[np.array([4, 5, 6]), np.array([7])], [np.array([9, 8])]])
    assert packed.index.shape == (2, 2, 3)
    np.testing.assert_array_equal(packed.active, [[1, 1], [1, 0]])
    np.testing.assert_allclose(packed.weight[0, 0], [1 / 3] * 3)
    np.testing.assert_allclose(packed.weight[1, 0], [1, 0, 0])
    np.testing.assert_allclose(packed.weight[0, 1], [0.5, 0.5, 0])
    assert packed.weight[1, 1].sum() == 0
    assert packed.sizes == [[3, 1], [2]]


def test_groups_and_their_schedule_do_not_depend_on_ranks():
    sizes = np.array([5, 40, 12, 40, 7, 30, 30, 9, 12, 3])
    cohort = np.array([0, 1, 2, 3, 5, 6, 7, 8, 9])
    groups = form_groups(cohort, sizes, 4)
    # By size, ties by id: {1, 3, 5, 6}, {2, 8, 7, 0}, {9}; ids sorted inside a group.
    assert [g.tolist() for g in groups] == [[1, 3, 5, 6], [0, 2, 7, 8], [9]]
    for world in (1, 2, 3, 4):
        plan = schedule_groups(groups, sizes, world)
        flat = sorted(tuple(g.tolist()) for rank in plan for g in rank)
        assert flat == sorted(tuple(g.tolist()) for g in groups)  # whole groups, each once
    assert [[g.tolist() for g in r] for r in schedule_groups(groups, sizes, 2)] == [
        [[1, 3, 5, 6]],
        [[0, 2, 7, 8], [9]],
    ]


def test_group_blocker_names_what_groups_cannot_do():
    config, net, *_ = setup()
    assert group_blocker(config, net) is None
    adam, *_ = setup("training.optimizer=adam")
    assert "adam" in group_blocker(adam, net)
    bn = FlatModel(build_model("resnet18_cifar", (3, 32, 32), 4, seed=1))
    assert "buffers" in group_blocker(config, bn)
    drop = FlatModel(torch.nn.Sequential(torch.nn.Dropout(0.5), torch.nn.Linear(4, 2)))
    assert "dropout" in group_blocker(config, drop)


def test_regression_through_the_vmap_path_matches_alone():
    config = load_config(None, ["training.batch_size=4", "training.local_epochs=1"])
    net = FlatModel(build_model("mlp", (6,), 0, seed=1, hidden=[8]))
    gen = torch.Generator().manual_seed(0)
    x, y = torch.randn(30, 6, generator=gen), torch.randn(30, generator=gen)
    parts = [np.arange(0, 10), np.arange(10, 17)]
    start = net.flat.detach().clone()
    local = LocalTrainer(net, config, "regression", x, y)
    alone = []
    for c, part in enumerate(parts):
        local.train(client=c, round_index=1, indices=part, start=start, plan=ClientPlan(),
                    lr=0.05)  # fmt: skip
        alone.append(net.flat.detach().clone())
    group = GroupTrainer(net, config, "regression", x, y)
    for plan in (group.plan, None):  # the stacked MLP, then vmap
        group.plan = plan
        w, _ = group.train(clients=[0, 1], round_index=1, parts=parts, start=start,
                           plans=[ClientPlan()] * 2, lr=0.05)  # fmt: skip
        torch.testing.assert_close(w, torch.stack(alone), rtol=1e-5, atol=1e-6)


def test_client_trainer_falls_back_and_announces_once(capsys):
    config, net, x, y, _ = setup("training.group_size=4", "training.optimizer=adam")
    runner = ClientTrainer(
        LocalTrainer(net, config, "classification", x, y), config, PARTS, announce=True
    )
    assert runner.unit_size == 1
    assert "one client at a time" in capsys.readouterr().out


def test_client_trainer_loads_each_clients_grouped_weights():
    alone, alone_res, *_, start, _ = alone_and_grouped()
    config, net, x, y, algorithm = setup("training.group_size=3")
    group = GroupTrainer(net, config, "classification", x, y)
    plans = dict(enumerate(plans_for(algorithm, start, None)))
    expect = {}
    for members in ([0, 1, 3], [2]):  # by size: 21, 13, 8 | 5 samples
        w, res = group.train(
            clients=members,
            round_index=3,
            parts=[PARTS[c] for c in members],
            start=start,
            plans=[plans[c] for c in members],
            lr=0.05,
        )
        expect.update({c: (w[j].clone(), res[j]) for j, c in enumerate(members)})
    runner = ClientTrainer(LocalTrainer(net, config, "classification", x, y), config, PARTS)
    sizes = np.array([len(p) for p in PARTS])
    units = rank_units(np.arange(4), sizes, 1, 0, runner.unit_size)
    assert [u.tolist() for u in units] == [[0, 1, 3], [2]]
    seen = []
    for unit in units:
        trained = runner.train(unit=unit, plans=plans, round_index=3, start=start, lr=0.05)
        for c, r in trained:
            assert torch.equal(net.flat, expect[c][0])
            assert r == expect[c][1]
            torch.testing.assert_close(net.flat, alone[c], rtol=1e-5, atol=2e-6)
            seen.append(c)
    assert seen == [0, 1, 3, 2]


def test_a_plan_that_cannot_group_trains_alone_beside_its_group():
    alone, alone_res, *_, start, _ = alone_and_grouped()
    config, net, x, y, algorithm = setup("training.group_size=4")
    plans = dict(enumerate(plans_for(algorithm, start, None)))
    plans[1] = dataclasses.replace(plans[1], groupable=False)
    runner = ClientTrainer(LocalTrainer(net, config, "classification", x, y), config, PARTS)
    local = LocalTrainer(net, config, "classification", x, y)
    local.train(client=1, round_index=3, indices=PARTS[1], start=start, plan=plans[1], lr=0.05)
    exact_alone = net.flat.detach().clone()
    unit = np.array([0, 1, 3, 2])
    for c, _ in runner.train(unit=unit, plans=plans, round_index=3, start=start, lr=0.05):
        if c == 1:  # trained by the one-client trainer: its bits exactly
            assert torch.equal(net.flat, exact_alone)
        else:
            torch.testing.assert_close(net.flat, alone[c], rtol=1e-5, atol=2e-6)


def test_mixed_precision_needs_groups_and_stays_close():
    with pytest.raises(InputError, match="group_size"):
        load_config(None, ["training.mixed_precision=true"])
    _, _, full, _, _, _ = alone_and_grouped()
    _, _, half, _, start, _ = alone_and_grouped(
        "training.mixed_precision=true", "training.group_size=2"
    )
    assert not torch.equal(half, full)  # bfloat16 forward: other bits
    # ... but the same training: the updates differ by a fraction of their size (bfloat16
    # keeps 8 significant bits; measured 3-14% here).
    error = (half - full).norm(dim=1) / (full - start).norm(dim=1)
    assert (error < 0.25).all(), error


def test_allocator_settings_respect_the_users_choice(monkeypatch):
    monkeypatch.setenv("MALLOC_TRIM_THRESHOLD_", "0")
    assert keep_freed_memory() is False  # the user's settings win
    monkeypatch.delenv("MALLOC_TRIM_THRESHOLD_")
    monkeypatch.delenv("MALLOC_MMAP_THRESHOLD_", raising=False)
    if sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc":
        assert keep_freed_memory() is True
