"""Parameters and FLOPs per layer against hand counts, dense and under masks."""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from hpc_fedprune.models import MODEL_NAMES, FlatModel, build_model
from hpc_fedprune.models.cost import model_cost
from tests.helpers import REPO, child_env


def cost_of(name, shape, outputs=10, **options):
    net = FlatModel(build_model(name, shape, outputs, seed=0, **options))
    return net, model_cost(net, shape)


def table(cost):
    return [(layer.name, layer.params, layer.flops) for layer in cost.layers]


def test_lenet5_hand_counts():
    # conv1: 6 x 1 x 5 x 5 = 150 weights (+6 biases), 28 x 28 outputs (padding 2);
    # conv2: 16 x 6 x 5 x 5 = 2400 (+16), 10 x 10 outputs; fc 400-120, 120-84, 84-10.
    _, cost = cost_of("lenet5", (1, 28, 28))
    assert table(cost) == [
        ("features.0", 156, 2 * 150 * 784),
        ("features.3", 2416, 2 * 2400 * 100),
        ("classifier.1", 48120, 2 * 48000),
        ("classifier.3", 10164, 2 * 10080),
        ("classifier.5", 850, 2 * 840),
    ]
    assert cost.params_dense == 61706
    assert cost.flops_dense == 2 * (117600 + 240000 + 48000 + 10080 + 840)


def test_mlp_hand_counts():
    _, cost = cost_of("mlp", (1, 28, 28), hidden=[128, 128])
    assert table(cost) == [
        ("net.1", 784 * 128 + 128, 2 * 784 * 128),
        ("net.3", 128 * 128 + 128, 2 * 128 * 128),
        ("net.5", 128 * 10 + 10, 2 * 128 * 10),
    ]


def test_small_cnn_hand_counts():
    # 3x32x32 -> conv 32@3x3 -> 30x30 -> pool 15 -> conv 64@3x3 -> 13x13 -> pool 6 ->
    # flatten 64*36 = 2304 -> fc 64 -> fc 10.
    _, cost = cost_of("small_cnn", (3, 32, 32))
    assert table(cost) == [
        ("features.0", 32 * 27 + 32, 2 * 32 * 27 * 900),
        ("features.3", 64 * 32 * 9 + 64, 2 * 64 * 32 * 9 * 169),
        ("classifier.1", 2304 * 64 + 64, 2 * 2304 * 64),
        ("classifier.3", 64 * 10 + 10, 2 * 640),
    ]


ZOO = {
    "mlp": ((1, 12, 12), 10, {}),
    "lenet5": ((1, 28, 28), 10, {}),
    "cnn": ((1, 28, 28), 10, {"hidden": 4, "fc": 16}),
    "small_cnn": ((3, 16, 16), 10, {}),
    "alexnet_cifar": ((3, 32, 32), 10, {}),
    "resnet18_cifar": ((3, 16, 16), 10, {"width": 4}),
    "vgg11": ((3, 32, 32), 10, {}),
    "cnn3d": ((1, 16, 20, 16), 0, {"width": 0.25, "blocks": 3}),
}


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_every_zoo_model_is_covered(name):
    shape, outputs, options = ZOO[name]
    net, cost = cost_of(name, shape, outputs, **options)
    # Every parameter belongs to exactly one row; running statistics are not parameters.
    assert cost.params_dense == net.num_params
    assert all(layer.flops > 0 for layer in cost.layers if layer.weight is not None)
    assert all(layer.flops == 0 for layer in cost.layers if layer.weight is None)
    # Evaluation mode and weights are left as they were.
    assert net.module.training
    full = torch.ones(net.numel, dtype=torch.bool)
    params, flops = cost.effective(full)
    assert params.sum() == cost.params_dense and flops.sum() == cost.flops_dense
    params, flops = cost.effective(torch.zeros(net.numel, dtype=torch.bool))
    assert params.sum() == 0 and flops.sum() == 0
    metrics = cost.round_metrics(None)
    assert metrics["flops_effective"] == metrics["flops_dense"] == cost.flops_dense


def test_unstructured_mask_counts_each_kept_weight_at_every_output_position():
    net, cost = cost_of("lenet5", (1, 28, 28))
    # Every 11th entry pruned: no unit loses all its incoming or outgoing weights (checked
    # below), so every kept weight is useful.
    mask = torch.arange(net.numel) % 11 != 0
    params, flops = cost.effective(mask)
    m = mask.numpy()
    for layer in cost.layers:
        w = m[layer.weight.offset : layer.weight.stop].reshape(layer.weight.shape[:2] + (-1,))
        assert w.any(axis=(1, 2)).all() and w.any(axis=(0, 2)).all()
    for i, layer in enumerate(cost.layers):
        kept = [int(m[t.offset : t.stop].sum()) for t in layer.tensors]
        assert params[i] == sum(kept)
        w = layer.weight
        assert flops[i] == 2 * layer.positions * int(m[w.offset : w.stop].sum())


def tiny_mlp():
    """4 -> 3 -> 2, weights W1 (3 x 4), b1 (3), W2 (2 x 3), b2 (2)."""
    return cost_of("mlp", (4,), 2, hidden=[3])


def mask_of(net, **off):
    """All-true mask with the named tensors' entries (index tuples) set False."""
    mask = torch.ones(net.numel, dtype=torch.bool)
    for info in net.layout:
        for idx in off.get(info.name.replace(".", "_"), ()):
            view = mask[info.offset : info.stop].view(info.shape)
            view[idx] = False
    return mask


def test_a_removed_neuron_removes_the_next_layers_work_on_it():
    net, cost = tiny_mlp()
    # Hidden unit 1 loses all its weights and its bias: it is always zero, so the output
    # layer's two weights reading it do nothing useful.
    mask = mask_of(net, net_1_weight=[(1, slice(None))], net_1_bias=[(1,)])
    params, flops = cost.effective(mask)
    assert params.tolist() == [15 - 5, 8]  # kept entries, useful or not
    assert flops.tolist() == [2 * 8, 2 * (6 - 2)]
    # With its bias kept the unit is a constant, not zero: the next layer still reads it.
    mask = mask_of(net, net_1_weight=[(1, slice(None))])
    assert cost.effective(mask)[1].tolist() == [2 * 8, 2 * 6]


def test_a_neuron_nobody_reads_stops_costing_its_incoming_weights():
    net, cost = tiny_mlp()
    # Column 2 of W2 pruned: hidden unit 2's output is never read, so its 4 incoming
    # weights are useless (its bias is kept, but biases are not counted as FLOPs).
    mask = mask_of(net, net_3_weight=[(slice(None), 2)])
    params, flops = cost.effective(mask)
    assert params.tolist() == [15, 6]
    assert flops.tolist() == [2 * (12 - 4), 2 * 4]


def test_a_removed_filter_removes_the_flattened_columns_it_feeds():
    # LeNet-5: conv2 (16 filters, 10x10 outputs) -> pool -> 5x5 -> flatten 400 -> fc1.
    net, cost = cost_of("lenet5", (1, 28, 28))
    mask = mask_of(net, features_3_weight=[(4,)], features_3_bias=[(4,)])
    params, flops = cost.effective(mask)
    dense = {layer.name: layer for layer in cost.layers}
    assert flops[1] == dense["features.3"].flops - 2 * 150 * 100
    # fc1's 120 x 25 weights reading filter 4's 5x5 outputs (columns 100..124) are useless.
    assert flops[2] == dense["classifier.1"].flops - 2 * 120 * 25
    assert params[2] == dense["classifier.1"].params  # kept entries are still counted


def test_batch_norm_and_residual_networks_are_not_propagated_through():
    net, cost = cost_of("vgg11", (3, 32, 32))
    first = cost.layers[0]
    assert first.name == "features.0"
    mask = mask_of(net, features_0_weight=[(0,)], features_0_bias=[(0,)])
    flops = cost.effective(mask)[1]
    # BatchNorm turns a zero channel into its shift: the next conv still reads it.
    second = [i for i, layer in enumerate(cost.layers) if layer.weight is not None][1]
    assert flops[second] == cost.layers[second].flops
    assert flops[0] == first.flops - 2 * 27 * 1024
    _, resnet = cost_of("resnet18_cifar", (3, 16, 16), width=4)
    assert resnet.links is None


def test_result_is_recomputed_when_the_mask_changes_in_place():
    net, cost = tiny_mlp()
    mask = torch.ones(net.numel, dtype=torch.bool)
    assert cost.effective(mask)[0].sum() == 23
    mask[:4] = False
    assert cost.effective(mask)[0].sum() == 19
    rows = cost.layer_rows(mask)
    assert rows["params_effective"].dtype == np.int64 and rows["params_effective"].sum() == 19


@pytest.mark.timeout(120)
def test_benchmark_quick_prints_json_lines():
    proc = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "model_cost.py"), "--quick"],
        capture_output=True, text=True, timeout=110, env=child_env(), cwd=REPO,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    rows = [json.loads(line) for line in proc.stdout.splitlines() if line.strip()]
    assert {(r["model"], r["density"]) for r in rows} == {
        (m, d) for m in ("mlp", "lenet5") for d in (1.0, 0.5, 0.1, 0.01)
    }
    dense = [r for r in rows if r["density"] == 1.0]
    assert all(r["flops_effective"] == r["flops_dense"] for r in dense)
