"""The model zoo: every network builds, runs, and initialises from the seed alone."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from hpc_fedprune.errors import InputError
from hpc_fedprune.models import (
    MODEL_NAMES,
    FlatModel,
    KeyedDropout,
    build_model,
    model_options,
    set_dropout_generator,
)
from hpc_fedprune.registry import MODELS
from hpc_fedprune.rng import Stream, torch_generator

# The paper-size 3D input (91x109x91) is too slow for a unit test; 64^3 keeps every stage.
SMALL = {"cnn3d": ((1, 64, 64, 64), {"width": 0.125})}


def _shape_and_options(name: str) -> tuple[tuple[int, ...], dict]:
    return SMALL.get(name, (MODELS.get(name).default_input, {}))


def test_registry_lists_the_required_models():
    assert set(MODEL_NAMES) == {
        "mlp",
        "lenet5",
        "cnn",
        "small_cnn",
        "alexnet_cifar",
        "resnet18_cifar",
        "vgg11",
        "cnn3d",
    }


@pytest.mark.parametrize("name", MODEL_NAMES)
def test_forward_backward_default_input(name):
    shape, options = _shape_and_options(name)
    classes = 0 if name == "cnn3d" else 10
    net = build_model(name, shape, classes, seed=0, **options)
    fm = FlatModel(net)
    set_dropout_generator(net, torch_generator(0, Stream.CLIENT, 0, 0))
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(0))
    out = net(x)
    assert out.shape == ((2,) if classes == 0 else (2, classes))
    out.square().mean().backward()
    assert torch.isfinite(fm.flat).all() and torch.isfinite(fm.grad).all()
    for info in fm.layout:
        if info.trainable:
            assert fm.grad[info.slice].any(), f"{name}: no gradient reaches {info.name}"
    assert fm.is_aliased()


@pytest.mark.parametrize(
    "name, shape, options",
    [
        ("mlp", (1, 28, 28), {}),
        ("lenet5", (1, 28, 28), {}),
        ("resnet18_cifar", (3, 16, 16), {"width": 8}),
        ("cnn3d", (1, 64, 64, 64), {"width": 0.125}),
    ],
)
def test_init_is_a_function_of_the_seed(name, shape, options):
    def flat(seed: int) -> torch.Tensor:
        return FlatModel(build_model(name, shape, 10, seed=seed, **options)).flat

    a, b, c = flat(7), flat(7), flat(8)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)


def test_build_does_not_touch_global_rng():
    state = torch.random.get_rng_state()
    build_model("lenet5", (1, 28, 28), 10, seed=1)
    build_model("resnet18_cifar", (3, 8, 8), 10, seed=1, width=4)
    assert torch.equal(state, torch.random.get_rng_state())


def test_mlp_is_fedsparsify_size_with_glorot_init():
    net = build_model("mlp", (1, 28, 28), 10, seed=3)
    fm = FlatModel(net)
    assert fm.num_params == 784 * 128 + 128 + 128 * 128 + 128 + 128 * 10 + 10
    for info in fm.layout:
        values = fm.flat[info.slice]
        if info.kind == "bias":
            assert not values.any()
        else:
            fan_out, fan_in = info.shape
            assert values.abs().max() <= math.sqrt(6 / (fan_in + fan_out))
    net = build_model("mlp", (20,), 3, seed=3, hidden=[8])
    assert [m.out_features for m in net.modules() if isinstance(m, nn.Linear)] == [8, 3]


def test_regression_output_and_cnn3d_bias():
    net = build_model("cnn3d", (1, 64, 64, 64), 0, seed=0, width=0.125)
    assert torch.all(net.output.bias == 62.68)
    mlp = build_model("mlp", (5,), 0, seed=0)
    assert mlp(torch.zeros(3, 5)).shape == (3,)


def test_layout_kinds_first_and_last_layer():
    fm = FlatModel(build_model("resnet18_cifar", (3, 16, 16), 10, seed=0, width=8))
    kinds = {i.kind for i in fm.layout}
    assert kinds == {"conv_weight", "norm_weight", "norm_bias", "buffer", "linear_weight", "bias"}
    weights = [i for i in fm.layout if i.kind in ("conv_weight", "linear_weight")]
    first = min(weights, key=lambda i: i.layer)
    last = max(weights, key=lambda i: i.layer)
    assert first.name == "conv1.weight" and last.name == "linear.weight"
    assert any(i.name.startswith("layers.2.shortcut.0") for i in weights)


def test_resnet_group_norm_has_no_buffers():
    fm = FlatModel(build_model("resnet18_cifar", (3, 16, 16), 10, seed=0, width=8, norm="group"))
    assert all(i.kind != "buffer" for i in fm.layout)
    assert any(isinstance(m, nn.GroupNorm) for m in fm.module.modules())


def test_lenet_adapts_to_input_size():
    fm28 = FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0))
    fm32 = FlatModel(build_model("lenet5", (3, 32, 32), 10, seed=0))
    assert dict(zip(fm28.names, fm28.shapes, strict=True))["classifier.1.weight"] == (120, 400)
    assert dict(zip(fm32.names, fm32.shapes, strict=True))["classifier.1.weight"] == (120, 576)


def test_bad_input_is_input_error():
    with pytest.raises(InputError, match=r"unknown model .resnet50. \(valid: mlp, "):
        build_model("resnet50", (3, 32, 32), 10, seed=0)
    with pytest.raises(InputError, match="no option"):
        build_model("lenet5", (1, 28, 28), 10, seed=0, widht=2)
    with pytest.raises(InputError, match="dimensions"):
        build_model("lenet5", (28, 28), 10, seed=0)
    with pytest.raises(InputError, match="does not fit"):
        build_model("vgg11", (3, 16, 16), 10, seed=0)
    with pytest.raises(InputError, match="num_classes"):
        build_model("mlp", (4,), -1, seed=0)
    with pytest.raises(InputError, match="init"):
        build_model("mlp", (4,), 2, seed=0, init="orthogonal")
    assert model_options("resnet18_cifar")["norm"] == "batch"


def test_keyed_dropout_draws_from_its_generator():
    drop = KeyedDropout(0.5)
    x = torch.ones(1000)
    with pytest.raises(RuntimeError, match="generator"):
        drop(x)
    drop.generator = torch_generator(1, Stream.CLIENT, 3, 4)
    a = drop(x)
    drop.generator = torch_generator(1, Stream.CLIENT, 3, 4)
    assert torch.equal(a, drop(x))
    assert set(a.unique().tolist()) == {0.0, 2.0}
    assert torch.equal(drop.eval()(x), x)
    net = build_model("alexnet_cifar", (3, 32, 32), 10, seed=0)
    assert set_dropout_generator(net, None) == 2
