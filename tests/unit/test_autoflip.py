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
    algo = make_algorithm(config, prunable, model.trainable_mask(), model.layout, model.module)
    return algo, model


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


def test_reference_theta0_measures_from_the_common_start():
    config, setup, trainer, theta0, result = explored("algorithm.autoflip.reference=theta0")
    disp = []
    for c in range(4):  # each explorer alone: its base epoch, then the exploration
        explorer = Explorer(trainer, config)
        explorer.begin(c, 1, theta0)
        explorer.epoch(setup.train_parts[c])
        explorer.explore(setup.train_parts[c], 2, 5)
        disp.append(squared_displacement(trainer.model.flat.detach(), theta0))
    torch.testing.assert_close(result.scores, sum(disp) / 4, rtol=1e-6, atol=1e-14)
    base_scores = explored()[4].scores
    assert not torch.allclose(result.scores, base_scores)  # the base epoch counts now


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


def _unit_rows(keep, layer, r):
    """Whether everything of unit ``r`` of ``layer`` is pruned in ``keep``."""
    parts = [keep[layer.weight.slice].view(layer.units, -1)[r]]
    parts += [keep[i.slice][r : r + 1] for i in (layer.bias, *layer.norm) if i is not None]
    nxt = layer.next_weight
    parts.append(keep[nxt.slice].view(nxt.shape[0], layer.units, -1)[:, r, :].reshape(-1))
    return torch.cat(parts)


def test_hybrid_removes_whole_units_with_everything_that_reads_them():
    """MLP 16-8: a removed hidden neuron loses its row, its bias and the next layer's
    column; the output layer is never thinned; the lowest mean scores go."""
    from hpc_fedprune.pruning.exploration import removed_units
    from hpc_fedprune.pruning.units import removal_mask, unit_layers

    model = FlatModel(build_model("mlp", SHAPE, 4, seed=0, hidden=(16, 8)))
    prunable = prunable_mask(model.layout, "all_params")
    layers = unit_layers(model.module, model.layout)
    weights = [i for i in model.layout if i.kind == "linear_weight"]
    assert [u.weight for u in layers] == weights[:2]  # not the output layer
    assert [u.next_weight for u in layers] == weights[1:]
    assert [u.span for u in layers] == [1, 1]
    gen = torch.Generator().manual_seed(3)
    scores = torch.rand(model.numel, generator=gen, dtype=torch.float64)
    keep = unit_mask(scores, layers, 0.25)
    means = [scores[u.weight.slice].view(u.units, -1).mean(1) for u in layers]
    cut = torch.sort(torch.cat(means)).values[pruned_count(24, 0.25) - 1]
    removed = 0
    for layer, m in zip(layers, means):
        for r in range(layer.units):
            if m[r] <= cut:  # everything of the unit is gone
                assert not bool(_unit_rows(keep, layer, r).any())
                removed += 1
            else:  # its bias and some of its row stay (a removed input may clear a column)
                assert bool(keep[layer.bias.slice][r])
                assert bool(keep[layer.weight.slice].view(layer.units, -1)[r].any())
    assert removed == pruned_count(24, 0.25) == 6
    # Nothing else is touched: the pruned entries are the removed units' entries (a
    # weight that is both a removed unit's input and another removed unit's output counts
    # once).
    union = torch.ones_like(keep)
    for layer, m in zip(layers, means):
        removal_mask(layer, m <= cut, union)
    assert torch.equal(keep, union)
    assert removed_units(keep, layers)[0] == 6
    # Hybrid: units first, then floor(tau N) of the entries they left.
    mask, normalised = guidance_mask(scores, model.layout, prunable, 0.25, units=layers)
    units_cut = unit_mask(normalised, layers, 0.25)
    assert bool((mask <= units_cut).all())
    n = int(prunable.sum())
    assert int((~mask).sum()) == int((~units_cut).sum()) + pruned_count(n, 0.25)


def test_hybrid_on_a_conv_net_with_batchnorm_removes_the_channel_everywhere():
    """conv -> BN -> ReLU -> pool -> conv -> BN -> ReLU -> flatten -> linear -> linear:
    a removed filter takes its BN scale and shift and the next layer's input channel
    (conv) or its spatial block of columns (linear after the flatten). The network then
    computes exactly what the network without those channels computes."""
    from hpc_fedprune.pruning.exploration import removed_units
    from hpc_fedprune.pruning.units import unit_layers

    torch.manual_seed(0)  # construction only; every value below is set explicitly
    net = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4, momentum=0.1), torch.nn.ReLU(),
        torch.nn.MaxPool2d(2), torch.nn.Conv2d(4, 6, 3), torch.nn.BatchNorm2d(6, momentum=0.1),
        torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(6 * 3 * 3, 5), torch.nn.ReLU(),
        torch.nn.Linear(5, 3),
    )  # fmt: skip
    model = FlatModel(net)
    layers = unit_layers(model.module, model.layout)
    names = [(u.weight.name, u.next_weight.name, u.span, len(u.norm)) for u in layers]
    assert names == [("0.weight", "4.weight", 1, 2), ("4.weight", "8.weight", 9, 2),
                     ("8.weight", "10.weight", 1, 0)]  # fmt: skip
    gen = torch.Generator().manual_seed(7)
    model.flat.copy_(torch.randn(model.numel, generator=gen))
    model.flat[model.num_params :].abs_()  # running variances must be positive
    keep = torch.ones(model.numel, dtype=torch.bool)
    from hpc_fedprune.pruning.units import removal_mask

    removal_mask(layers[0], torch.tensor([False, True, False, False]), keep)
    removal_mask(layers[1], torch.tensor([True, False, False, False, False, True]), keep)
    # 66 entries for conv 0's filter (9 + bias + 2 norm + 6 x 9 columns of conv 4), then
    # 2 x (36 - 9 already gone + bias + 2 norm) + 5 x 2 x 9 columns of the linear layer.
    assert removed_units(keep, layers) == (3, 216) and int((~keep).sum()) == 216
    x = torch.randn(8, 1, 12, 12, generator=gen)
    pruned = model.flat.detach() * keep
    model.load_(pruned)
    for mode in ("train", "eval"):
        getattr(model.module, mode)()
        with torch.no_grad():
            out = model.module(x)
            # The same network without channel 1 of conv 0 and channels 0, 5 of conv 4.
            small = _without_channels(model.module, [0, 2, 3], [1, 2, 3, 4])
            torch.testing.assert_close(out, small(x), rtol=1e-5, atol=1e-6)
        model.load_(pruned)  # train mode moved the running statistics


def _without_channels(net, keep0, keep1):
    """A copy of the test's conv net built with only the kept channels."""
    import copy

    small = copy.deepcopy(net)
    conv0, bn0, conv1, bn1, fc = small[0], small[1], small[4], small[5], small[8]
    k0, k1 = torch.tensor(keep0), torch.tensor(keep1)
    new = torch.nn.Sequential(
        torch.nn.Conv2d(1, len(keep0), 3), torch.nn.BatchNorm2d(len(keep0), momentum=0.1),
        torch.nn.ReLU(), torch.nn.MaxPool2d(2), torch.nn.Conv2d(len(keep0), len(keep1), 3),
        torch.nn.BatchNorm2d(len(keep1), momentum=0.1), torch.nn.ReLU(), torch.nn.Flatten(),
        torch.nn.Linear(len(keep1) * 9, 5), torch.nn.ReLU(), torch.nn.Linear(5, 3),
    )  # fmt: skip
    with torch.no_grad():
        new[0].weight.copy_(conv0.weight[k0])
        new[0].bias.copy_(conv0.bias[k0])
        for dst, src, k in ((new[1], bn0, k0), (new[5], bn1, k1)):
            for name in ("weight", "bias", "running_mean", "running_var"):
                getattr(dst, name).copy_(getattr(src, name)[k])
        new[4].weight.copy_(conv1.weight[k1][:, k0])
        new[4].bias.copy_(conv1.bias[k1])
        new[8].weight.copy_(fc.weight.view(5, 6, 9)[:, k1, :].reshape(5, -1))
        new[8].bias.copy_(fc.bias)
        new[10].load_state_dict(small[10].state_dict())
    new.train(net.training)
    return new


def test_residual_and_output_layers_have_no_removable_units():
    from hpc_fedprune.pruning.units import unit_layers

    model = FlatModel(build_model("resnet18_cifar", (3, 16, 16), 10, seed=0, width=8))
    names = [u.weight.name for u in unit_layers(model.module, model.layout)]
    # Only each block's first conv (conv1 -> bn1 -> relu -> conv2); the stem, conv2 and
    # the shortcuts feed residual sums, and the classifier is the output.
    assert names == [f"layers.{b}.conv1.weight" for b in range(8)]
    lenet = FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0))
    spans = [(u.weight.name, u.span) for u in unit_layers(lenet.module, lenet.layout)]
    assert spans == [("features.0.weight", 1), ("features.3.weight", 25),
                     ("classifier.1.weight", 1), ("classifier.3.weight", 1)]  # fmt: skip


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


def test_refresh_scores_what_clients_trained_and_keeps_the_pruned_set():
    """LeNet-5, tau 0.3: clients move their kept weights by about 1e-3 and upload pruned
    entries as 0. Scored from theta0 those zeros would look like moves of theta0's size
    and nearly every pruned weight would come back; scored by what the clients trained
    in the round they stay pruned."""
    model = FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0))
    algo, _ = autoflip("algorithm.autoflip.refresh=true", "algorithm.autoflip.tau=0.3",
                       model=model)  # fmt: skip
    assert algo.channels_within_mask and "displacement" in algo.channels
    theta0 = model.flat.detach().clone()
    gen = torch.Generator().manual_seed(6)
    scores = torch.rand(model.numel, generator=gen, dtype=torch.float64)
    mask = algo.initial_mask(weights=theta0.clone(), exploration=Outcome(scores))
    pruned = algo.prunable & ~mask
    assert int(pruned.sum()) == pruned_count(int(algo.prunable.sum()), 0.3)
    current = GlobalModel(theta0 * mask, mask)
    updates = []
    for client in range(2):
        step = 1e-3 * (0.5 + torch.rand(model.numel, generator=gen))
        local = (current.weights + step) * mask  # trained under the mask
        _, up = run_client(algo, ctx(), current, client, local)
        expected = ((local.double() - current.weights.double()) ** 2) * algo.prunable
        torch.testing.assert_close(up.channels["displacement"], expected, rtol=0, atol=0)
        assert bool((up.channels["displacement"][pruned] == 0).all())
        updates.append(up)
    new = server_step(algo, ctx(), sums_of(algo, updates, [0.5, 0.5]), current).model
    still = int((pruned & ~new.mask).sum()) / int(pruned.sum())
    assert still >= 0.9
    assert torch.equal(new.mask, mask)  # here exactly: every kept weight moved
    # Scored from theta0 (the old rule), most pruned weights would have come back.
    from_theta0 = sum(0.5 * ((u.message.double() - theta0.double()) ** 2) for u in updates)
    old_rule = algo.cut(from_theta0 * algo.prunable)[0]
    assert int((pruned & ~old_rule).sum()) / int(pruned.sum()) < 0.5


def test_refresh_ties_go_to_the_weights_already_pruned():
    """A tensor where nothing moved scores 0 everywhere, as the pruned weights do: the
    already-pruned ones are cut first, whatever their position."""
    from hpc_fedprune.pruning.exploration import element_mask

    prunable = torch.ones(10, dtype=torch.bool)
    scores = torch.zeros(10, dtype=torch.float64)
    old = torch.tensor([True] * 7 + [False] * 3)  # the last three were pruned
    keep = element_mask(scores, prunable, 0.3, prefer=~old)
    assert torch.equal(keep, old)
    assert element_mask(scores, prunable, 0.3).tolist() == [False] * 3 + [True] * 7


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


def test_structured_reports_the_units_and_parameters_removed():
    model = FlatModel(build_model("mlp", SHAPE, 4, seed=0, hidden=(16, 8)))
    algo, _ = autoflip("algorithm.autoflip.structured=true", "algorithm.autoflip.tau=0.25",
                       model=model)  # fmt: skip
    assert [u.weight.name for u in algo.units] == ["net.1.weight", "net.3.weight"]
    scores = torch.rand(model.numel, generator=torch.Generator().manual_seed(1),
                        dtype=torch.float64)  # fmt: skip
    weights = model.flat.detach().clone()
    mask = algo.initial_mask(weights=weights, exploration=Outcome(scores))
    server = algo.new_server(weights=weights, mask=mask)
    sums = {"delta": torch.zeros(model.numel, dtype=torch.float64)}
    metrics = server_step(algo, ctx(), sums, GlobalModel(weights * mask, mask), server).metrics
    assert metrics["units_removed"] == 6.0  # floor(0.25 * 24)
    gone = torch.ones_like(mask)
    from hpc_fedprune.pruning.units import removal_mask

    for u in algo.units:  # the units whose rows are empty, and all they take with them
        removal_mask(u, ~mask[u.weight.slice].view(u.units, -1).any(1), gone)
    assert metrics["unit_params_removed"] == float((~gone).sum())
    record = algo.exploration_record(Outcome(scores))
    assert record["attrs"]["units_removed"] == 6
    with pytest.raises(Exception, match="structured needs the network"):
        config = load_config(
            None, ["algorithm.name=autoflip", "algorithm.autoflip.structured=true"]
        )
        make_algorithm(config, algo.prunable, model.trainable_mask(), model.layout)
