"""Prunable-set presets select exactly what they say."""

from __future__ import annotations

import pytest
import torch

from hpc_fedprune.errors import InputError
from hpc_fedprune.models import FlatModel, TensorInfo, build_model
from hpc_fedprune.pruning import prunable_mask, prunable_tensors


def _layout() -> tuple[TensorInfo, ...]:
    """conv (w, b) -> bn (w, b) -> linear (w, b) -> frozen 'other' -> linear (w, b) -> buffers."""
    spec = [
        ("conv.weight", (2, 1, 3, 3), "conv_weight", 0, True),
        ("conv.bias", (2,), "bias", 0, True),
        ("bn.weight", (2,), "norm_weight", 1, True),
        ("bn.bias", (2,), "norm_bias", 1, True),
        ("fc1.weight", (4, 8), "linear_weight", 2, True),
        ("fc1.bias", (4,), "bias", 2, True),
        ("emb.table", (3,), "other", 3, False),
        ("fc2.weight", (3, 4), "linear_weight", 4, True),
        ("fc2.bias", (3,), "bias", 4, True),
        ("bn.running_mean", (2,), "buffer", 1, False),
        ("bn.running_var", (2,), "buffer", 1, False),
    ]
    out, offset = [], 0
    for name, shape, kind, layer, trainable in spec:
        n = int(torch.tensor(shape).prod())
        out.append(TensorInfo(name, shape, offset, n, kind, layer, trainable))
        offset += n
    return tuple(out)


def _names(**kwargs) -> list[str]:
    return [i.name for i in prunable_tensors(_layout(), **kwargs)]


def test_presets():
    assert _names(preset="conv_linear_weights") == ["conv.weight", "fc1.weight", "fc2.weight"]
    assert _names(preset="all_trainable") == [
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "fc1.weight",
        "fc1.bias",
        "fc2.weight",
        "fc2.bias",
    ]
    assert _names(preset="all_params") == _names(preset="all_trainable")[:6] + [
        "emb.table",
        "fc2.weight",
        "fc2.bias",
    ]


def test_options():
    assert _names(preset="all_trainable", exclude_first_last=True) == [
        "bn.weight",
        "bn.bias",
        "fc1.weight",
        "fc1.bias",
    ]
    assert _names(preset="all_trainable", exclude_bias=True, exclude_norm=True) == [
        "conv.weight",
        "fc1.weight",
        "fc2.weight",
    ]
    assert _names(preset="conv_linear_weights", exclude_names=("fc1",)) == [
        "conv.weight",
        "fc2.weight",
    ]


def test_mask_vector_matches_tensors_and_never_buffers():
    layout = _layout()
    mask = prunable_mask(layout, "all_params")
    assert mask.dtype == torch.bool and mask.numel() == layout[-1].stop
    for info in layout:
        assert bool(mask[info.slice].all()) == (info.kind != "buffer")
        assert bool(mask[info.slice].any()) == (info.kind != "buffer")
    with pytest.raises(InputError, match="preset"):
        prunable_mask(layout, "everything")


def test_feddip_resnet_rule_on_real_model():
    """FedDIP's ResNet-18: every 3x3 conv and the classifier; not the 1x1 shortcuts."""
    fm = FlatModel(build_model("resnet18_cifar", (3, 16, 16), 10, seed=0, width=8))
    chosen = prunable_tensors(fm.layout, "conv_linear_weights", exclude_names=("shortcut",))
    assert all(i.kind in ("conv_weight", "linear_weight") for i in chosen)
    assert all(len(i.shape) == 2 or i.shape[-1] == 3 for i in chosen)
    assert sum(1 for i in chosen if i.kind == "conv_weight") == 17  # stem + 16 in blocks
    mask = prunable_mask(fm.layout, "all_trainable")
    assert int(mask.sum()) == fm.num_params


def test_first_and_last_separately():
    assert _names(preset="conv_linear_weights", exclude_first=True) == ["fc1.weight", "fc2.weight"]
    assert _names(preset="all_trainable", exclude_last=True) == [
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "fc1.weight",
        "fc1.bias",
    ]


def _resnet_setup(*overrides: str):
    from hpc_fedprune.config import load_config
    from hpc_fedprune.sim.setup import build_setup

    config = load_config(
        None,
        [
            "model.name=resnet18_cifar",
            "model.resnet18_cifar.width=8",
            "data.shape=[3, 16, 16]",
            "data.num_train=40",
            "data.num_test=10",
            "partition.num_clients=2",
            "federation.clients_per_round=2",
            "partition.min_size=1",
            *overrides,
        ],
    )
    return build_setup(config, 1, "cpu")


def test_feddip_resnet18_set_from_the_config():
    """FedDIP's ResNet-18 rule (keys with 'conv' and 'weight', plus linear.weight) through
    `algorithm.feddip.exclude_names`, checked against the rule applied to the names."""
    setup = _resnet_setup("algorithm.name=feddip", "algorithm.feddip.exclude_names=[shortcut]")
    layout, prunable = setup.model.layout, setup.algorithm.prunable
    expected = torch.zeros_like(prunable)
    for info in layout:
        if ("conv" in info.name and info.name.endswith("weight")) or info.name == "linear.weight":
            expected[info.slice] = True
    assert torch.equal(prunable, expected)
    assert not any(bool(prunable[i.slice].any()) for i in layout if "shortcut" in i.name)


def test_exclusions_from_the_config_for_every_method():
    setup = _resnet_setup(
        "algorithm.name=fedsparsify", "algorithm.fedsparsify.exclude=[norm, bias]"
    )
    kinds = {i.kind for i in setup.model.layout if bool(setup.algorithm.prunable[i.slice].any())}
    assert kinds == {"conv_weight", "linear_weight"}
    setup = _resnet_setup(
        "algorithm.name=random_mask", "algorithm.random_mask.exclude=[first, last]"
    )
    named = [i.name for i in setup.model.layout if bool(setup.algorithm.prunable[i.slice].any())]
    assert "conv1.weight" not in named and "linear.weight" not in named
    assert "layers.0.conv1.weight" in named


def test_bad_exclusions_name_the_key():
    from hpc_fedprune.config import load_config
    from hpc_fedprune.config.schema import EXCLUSIONS as SCHEMA_EXCLUSIONS
    from hpc_fedprune.pruning.prunable import EXCLUSIONS

    assert SCHEMA_EXCLUSIONS == EXCLUSIONS
    with pytest.raises(InputError, match=r"algorithm\.feddip\.exclude: 'biases' is not one of"):
        load_config(None, ["algorithm.feddip.exclude=[biases]"])
    with pytest.raises(InputError, match=r"algorithm\.feddst\.exclude_names: 'shortcuts' matches"):
        _resnet_setup("algorithm.name=feddst", "algorithm.feddst.exclude_names=[shortcuts]")
    with pytest.raises(InputError, match="algorithm.oneshot: the exclusions leave nothing"):
        _resnet_setup(
            "algorithm.name=oneshot",
            "algorithm.oneshot.prunable=conv_linear_weights",
            "algorithm.oneshot.exclude_names=[weight]",
        )
