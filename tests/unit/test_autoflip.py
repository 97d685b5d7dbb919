"""AutoFLIP's defining rules: independent explorers, per-tensor scaling, the tau cut, hybrid
units, the mask under training, the EMA server step, refresh (whole runs: e2e and mpi)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.algorithms import GlobalModel, RoundContext, make_algorithm
from hpc_fedprune.comm.encodings import plan_from_counts
from hpc_fedprune.comm.world import World
from hpc_fedprune.config import load_config
from hpc_fedprune.exploration.phase import Explorer, choose_explorers, run_exploration
from hpc_fedprune.models import FlatModel, build_model
from hpc_fedprune.pruning import pruned_count
from hpc_fedprune.pruning.exploration import (
    element_mask,
    guidance_mask,
    normalise_per_tensor,
    squared_displacement,
    unit_mask,
)
from hpc_fedprune.pruning.prunable import prunable_mask
from hpc_fedprune.sim.setup import build_setup, to_device
from hpc_fedprune.training.local import LocalTrainer
from tests.unit.algo_driver import run_client, server_step, sums_of

SHAPE = (1, 12, 12)
TINY = [
    "algorithm.name=autoflip",
    "data.num_train=240",
    "data.num_test=40",
    "data.shape=[1, 12, 12]",
    "model.name=mlp",
    "model.mlp.hidden=[16]",
    "partition.num_clients=4",
    "federation.clients_per_round=2",
    "partition.min_size=5",
    "training.optimizer=adam",
    "training.lr=0.01",
    "training.batch_size=16",
    "algorithm.autoflip.epochs=2",
    "algorithm.autoflip.patience=5",
]


def net() -> FlatModel:
    return FlatModel(build_model("small_cnn", SHAPE, 4, seed=0))


def autoflip(*overrides: str, model: FlatModel | None = None):
    config = load_config(None, ["algorithm.name=autoflip", *overrides])
    model = model or net()
    prunable = prunable_mask(model.layout, config.algorithm.autoflip.prunable)
    return make_algorithm(config, prunable, model.trainable_mask(), model.layout), model


def ctx(round_index: int = 1) -> RoundContext:
    return RoundContext(
        round=round_index, rounds=5, seed=0, lr=0.1, cohort_samples=10, cohort_size=2
    )


def explored(*overrides: str):
    """A built tiny run on one rank, its trainer, theta0 and the exploration outcome."""
    config = load_config(None, [*TINY, *overrides])
    setup = build_setup(config, 1, "cpu")
    ds = setup.dataset
    trainer = LocalTrainer(
        setup.model, config, ds.task, to_device(ds.x_train, "cpu"), to_device(ds.y_train, "cpu")
    )
    theta0 = setup.model.flat.detach().clone()
    result = run_exploration(config, World.from_mpi(), setup, trainer, theta0)
    return config, setup, trainer, theta0, result


def alone(config, setup, trainer, client: int, start: torch.Tensor, *, own_base: bool):
    """One explorer run by itself on a fresh rank state: its squared displacement."""
    explorer = Explorer(trainer, config)
    explorer.begin(client, 1, start)
    if own_base:
        explorer.epoch(setup.train_parts[client])
    base = trainer.model.flat.detach().clone()
    cfg = config.algorithm.autoflip
    explorer.explore(setup.train_parts[client], cfg.epochs, cfg.patience)
    return squared_displacement(trainer.model.flat.detach(), base)


# ---------------------------------------------------------------- exploration
def test_explorers_are_independent_and_start_from_theta0():
    config, setup, trainer, theta0, result = explored()
    assert result.clients.tolist() == [0, 1, 2, 3]
    # Each explorer alone, from theta0, in reverse order: the phase's mean must match, so
    # no explorer continued from another one's weights (the authors' aliasing bug).
    disp = {c: alone(config, setup, trainer, c, theta0, own_base=True) for c in (3, 2, 1, 0)}
    assert not torch.allclose(disp[0], disp[1])  # different data, different displacement
    mean = sum(disp[c] for c in range(4)) / 4
    torch.testing.assert_close(result.scores, mean, rtol=1e-6, atol=1e-14)  # float32 differences
    assert result.client_epochs == 4 * (1 + 2) and result.epochs.tolist() == [2, 2, 2, 2]
    # Each explorer downloads theta0 and uploads its dense displacement, as encoded.
    n = setup.model.numel
    down = plan_from_counts(n, int(torch.count_nonzero(theta0))).total_bytes
    assert result.bytes_down == 4 * down
    assert 0 < result.bytes_up <= 4 * plan_from_counts(n, n).total_bytes


def test_shared_base_is_one_epoch_from_theta0_for_every_explorer():
    config, setup, trainer, theta0, result = explored("algorithm.autoflip.base=shared")
    explorer = Explorer(trainer, config)
    explorer.begin(0, 2, theta0)  # the first explorer's data, stage 2: the shared base
    explorer.epoch(setup.train_parts[0])
    base = trainer.model.flat.detach().clone()
    disp = [alone(config, setup, trainer, c, base, own_base=False) for c in range(4)]
    torch.testing.assert_close(
        result.scores, sum(disp) / 4, rtol=1e-6, atol=1e-14
    )  # float32 differences
    assert result.client_epochs == 1 + 4 * 2


def test_explorer_choice_and_early_stopping():
    assert choose_explorers(5, 20, 1.0).tolist() == list(range(20))
    some = choose_explorers(5, 20, 0.25)
    assert len(some) == 5 and some.tolist() == sorted(set(some.tolist()))
    assert np.array_equal(some, choose_explorers(5, 20, 0.25))  # a function of the seed
    assert len(choose_explorers(5, 20, 0.01)) == 1
    explorer = Explorer(None, None)
    losses = iter([3.0, 2.0, 2.5, 2.0, 1.0, 0.5])
    explorer.epoch = lambda indices: next(losses)
    # Best 2.0 at epoch 2; epochs 3 and 4 bring no new lowest (2.0 is not lower): stop.
    assert explorer.explore(np.arange(3), epochs=10, patience=2) == 4
    explorer.epoch = lambda indices: 1.0
    assert explorer.explore(np.arange(3), epochs=3, patience=5) == 3


# ---------------------------------------------------------------- scores to masks
def test_minmax_maps_each_tensor_to_zero_one_and_robust_centres_the_median():
    model = net()
    prunable = prunable_mask(model.layout, "all_params")
    gen = torch.Generator().manual_seed(1)
    raw = torch.rand(model.numel, generator=gen, dtype=torch.float64)
    raw[model.layout[1].slice] = 0.7  # a tensor whose entries all moved alike
    scaled = normalise_per_tensor(raw * 1e-6, model.layout, prunable, "minmax")
    for info in model.layout:
        seg = scaled[info.slice]
        if info.kind == "buffer":
            assert bool((seg == 0).all())
        elif info is model.layout[1]:
            assert bool((seg == 0).all())  # no spread: 0, not NaN
        else:
            assert float(seg.min()) == 0.0 and float(seg.max()) == 1.0
    robust = normalise_per_tensor(raw, model.layout, prunable, "robust")
    seg = robust[model.layout[0].slice].numpy()
    q25, q50, q75 = np.percentile(seg, [25, 50, 75])  # numpy's linear interpolation
    assert abs(q50) < 1e-12 and abs(q75 - q25 - 1.0) < 1e-12


def test_threshold_prunes_exactly_tau_with_ties_by_index():
    prunable = torch.ones(1000, dtype=torch.bool)
    prunable[:10] = False
    scores = torch.rand(1000, generator=torch.Generator().manual_seed(2), dtype=torch.float64)
    mask = element_mask(scores, prunable, 0.3)
    assert int((~mask).sum()) == pruned_count(990, 0.3) == 297
    assert bool(mask[:10].all())
    assert float(scores[~mask].max()) < float(scores[mask & prunable].min())
    tied = element_mask(torch.zeros(1000, dtype=torch.float64), prunable, 0.3)
    assert (~tied).nonzero().squeeze(1).tolist() == list(range(10, 307))


def test_threshold_works_past_torch_quantile_limit():
    n = 17_000_000  # torch.quantile refuses more than 2**24 elements
    scores = torch.rand(n, generator=torch.Generator().manual_seed(5))
    scores[7] = -1.0  # the lowest score
    mask = element_mask(scores, torch.ones(n, dtype=torch.bool), 0.25)
    assert int((~mask).sum()) == n // 4 and not bool(mask[7])
    assert float(scores[~mask].max()) <= float(scores[mask].min())


def test_hybrid_removes_whole_units_and_keeps_the_output_layer():
    model = FlatModel(build_model("mlp", SHAPE, 4, seed=0, hidden=(16, 8)))
    prunable = prunable_mask(model.layout, "all_params")
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(model.numel, generator=gen, dtype=torch.float64)
    hidden = [i for i in model.layout if i.kind == "linear_weight"][:-1]
    units = sum(i.shape[0] for i in hidden)
    keep = unit_mask(scores, model.layout, prunable, 0.25)
    removed = []
    for info in hidden:
        rows = keep[info.slice].view(info.shape[0], -1)
        bias = next(b for b in model.layout if b.kind == "bias" and b.layer == info.layer)
        for r in range(info.shape[0]):
            assert bool(rows[r].all()) or not bool(rows[r].any())  # whole units only
            if not bool(rows[r].any()):
                removed.append(float(scores[info.slice].view(info.shape[0], -1)[r].mean()))
                assert not bool(keep[bias.slice][r])  # its bias goes with it
    assert len(removed) == pruned_count(units, 0.25)
    means = [scores[i.slice].view(i.shape[0], -1).mean(1) for i in hidden]
    assert max(removed) <= float(torch.sort(torch.cat(means)).values[len(removed)])
    out = [i for i in model.layout if i.kind == "linear_weight"][-1]
    assert bool(keep[out.slice].all())
    # Hybrid: the element cut and the unit cut, both on the normalised scores.
    mask, normalised = guidance_mask(scores, model.layout, prunable, 0.25, structured=True)
    element = element_mask(normalised, prunable, 0.25)
    units_cut = unit_mask(normalised, model.layout, prunable, 0.25)
    assert bool((mask == (element & units_cut)).all())
    assert int((~mask).sum()) > int((~element).sum())


# ---------------------------------------------------------------- the algorithm
class Outcome:
    """An exploration outcome as the phase hands it over (scores on rank 0 only)."""

    def __init__(self, scores):
        self.clients, self.epochs, self.scores = np.arange(2), np.array([3, 4]), scores
        self.client_epochs, self.bytes_up, self.bytes_down = 9, 100, 200


def test_initial_mask_prunes_tau_and_the_mask_holds_after_every_client_step():
    algo, model = autoflip("algorithm.autoflip.tau=0.4", "training.optimizer=adam")
    theta0 = model.flat.detach().clone()
    gen = torch.Generator().manual_seed(4)
    scores = torch.rand(model.numel, generator=gen, dtype=torch.float64)
    mask = algo.initial_mask(weights=theta0, exploration=Outcome(scores))
    assert int((~mask).sum()) == pruned_count(int(algo.prunable.sum()), 0.4)
    config = load_config(
        None,
        [
            "training.optimizer=adam",
            "training.lr=0.05",
            "training.batch_size=4",
            "training.local_epochs=1",
        ],
    )
    x, y = torch.randn(16, *SHAPE, generator=gen), torch.randint(0, 4, (16,), generator=gen)
    trainer = LocalTrainer(model, config, "classification", x, y)
    seen = []
    first = next(m for m in model.module.modules() if isinstance(m, torch.nn.Conv2d))
    first.register_forward_pre_hook(lambda mod, inp: seen.append(model.flat.detach().clone()))
    current = GlobalModel(theta0 * mask, mask)
    trainer.train(
        client=0,
        round_index=1,
        indices=np.arange(16),
        start=current.weights,
        plan=algo.plan_client(ctx=ctx(), model=current, client=0),
        lr=0.05,
    )
    seen.append(model.flat.detach().clone())
    assert len(seen) == 5 and all(bool((w[~mask] == 0).all()) for w in seen)
    assert bool((seen[-1][mask] != seen[0][mask]).any())  # kept weights did train


def test_server_step_is_the_authors_ema_and_fedavgm_on_request():
    algo, model = autoflip("federation.server_momentum=0.9")
    w = torch.zeros(4)
    u1, u2 = torch.tensor([1.0, 2.0, 0.0, 4.0]), torch.tensor([0.5, 0.0, 1.0, 0.0])
    mask = torch.tensor([True, True, True, False])
    server = algo.new_server(weights=w, mask=mask)
    w1 = algo.apply_update(server, w, u1.double()) * mask
    w2 = algo.apply_update(server, w1, u2.double()) * mask
    v1 = 0.1 * u1
    v2 = 0.9 * v1 + 0.1 * u2
    torch.testing.assert_close(w1, (w + v1) * mask)
    torch.testing.assert_close(w2, (w + v1 + v2) * mask)
    avgm, _ = autoflip("federation.server_momentum=0.9", "algorithm.autoflip.server_update=fedavgm")
    fresh = avgm.new_server(weights=w, mask=None)
    torch.testing.assert_close(avgm.apply_update(fresh, w, u1.double()), u1)


def test_refresh_recuts_the_mask_from_the_cohorts_displacement():
    algo, model = autoflip("algorithm.autoflip.refresh=true", "algorithm.autoflip.tau=0.5")
    assert not algo.channels_within_mask and "displacement" in algo.channels
    theta0 = model.flat.detach().clone()
    algo.initial_mask(weights=theta0)  # other ranks: no scores yet, keeps theta0 as reference
    mask = torch.ones(model.numel, dtype=torch.bool)
    current = GlobalModel(theta0.clone(), mask)
    local = theta0.clone()
    moved = algo.prunable & (torch.arange(model.numel) % 3 == 0)
    local[moved] += 1.0
    _, up = run_client(algo, ctx(), current, 0, local)
    torch.testing.assert_close(up.channels["displacement"], moved.double())
    new = server_step(algo, ctx(), sums_of(algo, [up], [0.5]), current).model
    assert bool(new.mask[moved].all())  # what moved is kept
    assert int((~new.mask).sum()) == pruned_count(int(algo.prunable.sum()), 0.5)


def test_exploration_cost_is_reported_once():
    algo, _ = autoflip()

    weights = torch.zeros(algo.prunable.numel())
    current = GlobalModel(weights, torch.ones_like(algo.prunable))
    server = algo.new_server(weights=weights, mask=current.mask, exploration=Outcome(None))
    sums = {"delta": torch.zeros(weights.numel(), dtype=torch.float64)}
    first, later = (server_step(algo, ctx(), sums, current, server).metrics for _ in range(2))
    assert first == {
        "exploration_bytes_up": 100.0,
        "exploration_bytes_down": 200.0,
        "exploration_client_epochs": 9.0,
    }
    assert set(later) == set(first) and not any(later.values())


@pytest.mark.parametrize(
    "key", ["tau=1.5", "patience=0", "epochs=0", "base=common", "explorer_fraction=0"]
)
def test_bad_settings_are_refused_at_load(key):
    from hpc_fedprune.errors import InputError

    with pytest.raises(InputError):
        load_config(None, ["algorithm.name=autoflip", f"algorithm.autoflip.{key}"])
