"""FlatModel: one buffer for all parameters and float buffers, views everywhere."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn

from hpc_fedprune.models import FlatModel, build_model


class Tiny(nn.Module):
    """Conv + BN + Linear, a frozen parameter, an int buffer and a non-persistent buffer."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 2, 3)
        self.bn = nn.BatchNorm2d(2)
        self.fc = nn.Linear(2 * 4 * 4, 3)
        self.scale = nn.Parameter(torch.tensor([2.0]), requires_grad=False)
        self.register_buffer("steps", torch.zeros((), dtype=torch.int64))
        self.register_buffer("table", torch.ones(3), persistent=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = torch.relu(self.bn(self.conv(x)))
        return self.fc(h.flatten(1)) * self.scale + self.table


def _tiny(seed: int = 0) -> Tiny:
    net = Tiny()
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in net.parameters():
            p.copy_(torch.randn(p.shape, generator=gen))
    return net


def _batch(seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    return torch.randn(4, 1, 6, 6, generator=gen), torch.randint(0, 3, (4,), generator=gen)


def _concat(fm: FlatModel) -> torch.Tensor:
    sd = fm.module.state_dict()
    return torch.cat([sd[i.name].reshape(-1).float() for i in fm.layout])


def test_layout_params_then_float_buffers_contiguous():
    fm = FlatModel(_tiny())
    names = fm.names
    # named_parameters() order: the root module's own parameter comes first.
    assert names == (
        "scale",
        "conv.weight",
        "conv.bias",
        "bn.weight",
        "bn.bias",
        "fc.weight",
        "fc.bias",
        "bn.running_mean",
        "bn.running_var",
    )
    offset = 0
    for info in fm.layout:
        assert info.offset == offset
        assert info.numel == int(np.prod(info.shape))
        offset += info.numel
    assert fm.numel == offset == fm.flat.numel() == fm.grad.numel()
    assert fm.flat.dtype == torch.float32 and fm.flat.dim() == 1
    kinds = {i.name: i.kind for i in fm.layout}
    assert kinds["conv.weight"] == "conv_weight" and kinds["fc.weight"] == "linear_weight"
    assert kinds["conv.bias"] == kinds["fc.bias"] == "bias"
    assert kinds["bn.weight"] == "norm_weight" and kinds["bn.bias"] == "norm_bias"
    assert kinds["bn.running_var"] == "buffer" and kinds["scale"] == "other"
    # Integer and non-persistent buffers are not in flat; BatchNorm's counter is gone.
    assert "steps" not in names and "table" not in names
    assert fm.module.bn.num_batches_tracked is None
    assert fm.param_numel == sum(i.numel for i in fm.layout if i.kind != "buffer")
    assert torch.equal(fm.flat, _concat(fm))


def test_layer_index_registration_order():
    fm = FlatModel(_tiny())
    layer = {i.name: i.layer for i in fm.layout}
    assert layer["scale"] == 0  # owned by the root module, first in named_modules()
    assert layer["conv.weight"] == layer["conv.bias"] == 1
    assert layer["bn.weight"] == layer["bn.running_mean"] == 2
    assert layer["fc.weight"] == layer["fc.bias"] == 3


def test_trainable_mask_and_num_params():
    fm = FlatModel(_tiny())
    mask = fm.trainable_mask()
    assert mask.dtype == torch.bool and mask.numel() == fm.numel
    assert int(mask.sum()) == fm.num_params
    scale = next(i for i in fm.layout if i.name == "scale")
    assert not scale.trainable and not mask[scale.slice].any()
    assert not mask[fm.param_numel :].any()  # buffers never trainable
    expected = sum(p.numel() for p in fm.module.parameters() if p.requires_grad)
    assert fm.num_params == expected


def test_writes_alias_both_ways():
    fm = FlatModel(_tiny())
    assert fm.is_aliased()
    w = fm.module.fc.weight
    info = next(i for i in fm.layout if i.name == "fc.weight")
    fm.flat[info.offset] = 123.0
    assert w.view(-1)[0].item() == 123.0
    with torch.no_grad():
        fm.module.bn.bias.fill_(-7.0)
    bias = next(i for i in fm.layout if i.name == "bn.bias")
    assert torch.all(fm.flat[bias.slice] == -7.0)
    fm.view("conv.bias").zero_()
    assert torch.all(fm.module.conv.bias == 0)


def test_bn_running_stats_update_lands_in_flat():
    fm = FlatModel(_tiny())
    mean = next(i for i in fm.layout if i.name == "bn.running_mean")
    before = fm.flat[mean.slice].clone()
    fm.module.train()
    fm.module(_batch()[0])
    assert not torch.equal(before, fm.flat[mean.slice])
    assert torch.equal(fm.flat[mean.slice], fm.module.bn.running_mean)


def test_momentum_none_rejected():
    net = nn.Sequential(nn.Linear(2, 2), nn.BatchNorm1d(2, momentum=None))
    with pytest.raises(ValueError, match="momentum"):
        FlatModel(net)


def test_backward_writes_into_flat_grad():
    fm = FlatModel(_tiny())
    x, y = _batch()
    nn.functional.cross_entropy(fm.module(x), y).backward()
    for info in fm.layout:
        if info.trainable:
            p = dict(fm.module.named_parameters())[info.name]
            assert torch.equal(fm.grad[info.slice], p.grad.reshape(-1))
    assert not fm.grad[fm.param_numel :].any()
    scale = next(i for i in fm.layout if i.name == "scale")
    assert fm.module.scale.grad is None and not fm.grad[scale.slice].any()
    fm.zero_grad()
    assert not fm.grad.any() and fm.is_aliased()


def test_grad_view_survives_optimizer_zero_grad_set_to_none():
    fm = FlatModel(_tiny())
    ref = copy.deepcopy(fm.module)
    opt = torch.optim.SGD(fm.module.parameters(), lr=0.1)
    opt.zero_grad()  # set_to_none=True: the views are dropped
    x, y = _batch()
    nn.functional.cross_entropy(fm.module(x), y).backward()
    nn.functional.cross_entropy(ref(x), y).backward()
    assert fm.is_aliased()
    expected = torch.cat(
        [
            p.grad.reshape(-1) if p.grad is not None else torch.zeros(p.numel())  # frozen parameter
            for p in ref.parameters()
        ]
    )
    assert torch.equal(fm.grad[: fm.param_numel], expected)


@pytest.mark.parametrize(
    "make_opt",
    [
        lambda ps: torch.optim.SGD(ps, lr=0.05, momentum=0.9, weight_decay=5e-4),
        lambda ps: torch.optim.Adam(ps, lr=1e-2),
    ],
    ids=["sgd_momentum", "adam"],
)
def test_optimizer_steps_match_unflattened_model(make_opt):
    plain = _tiny()
    flat_net = copy.deepcopy(plain)
    fm = FlatModel(flat_net)
    opt_plain = make_opt(plain.parameters())
    opt_flat = make_opt(flat_net.parameters())
    for step in range(3):
        x, y = _batch(step)
        opt_plain.zero_grad()
        nn.functional.cross_entropy(plain(x), y).backward()
        opt_plain.step()
        fm.zero_grad()
        before = fm.flat.clone()
        nn.functional.cross_entropy(flat_net(x), y).backward()
        opt_flat.step()
        assert not torch.equal(before, fm.flat)  # the step is visible in flat
    assert fm.is_aliased()
    sd = plain.state_dict()
    for info in fm.layout:
        assert torch.allclose(fm.flat[info.slice], sd[info.name].reshape(-1), atol=1e-6), info.name


def test_load_in_place_keeps_objects():
    fm = FlatModel(_tiny())
    params = list(fm.module.parameters())
    ptr = fm.flat.data_ptr()
    target = np.arange(fm.numel, dtype=np.float32)
    target.setflags(write=False)  # e.g. read from h5py or an MPI buffer
    fm.load_(target)
    assert fm.flat.data_ptr() == ptr
    assert all(a is b for a, b in zip(params, fm.module.parameters(), strict=True))
    assert torch.equal(fm.flat, torch.arange(fm.numel, dtype=torch.float32))
    first_conv = next(i for i in fm.layout if i.name == "conv.weight").offset
    assert fm.module.conv.weight.reshape(-1)[0].item() == float(first_conv)
    fm.load_(torch.zeros(fm.numel, dtype=torch.float64))
    assert not fm.flat.any() and fm.is_aliased()
    with pytest.raises(ValueError, match="length"):
        fm.load_(torch.zeros(fm.numel + 1))


def test_module_to_breaks_aliasing_and_flat_to_repoints():
    fm = FlatModel(_tiny())
    fm.module.double()  # what module.to(...) does: fresh storage for every tensor
    assert not fm.is_aliased()

    fm = FlatModel(_tiny())
    flat = fm.flat
    assert fm.to("cpu") is fm and fm.flat is flat  # same device: nothing moves


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a GPU")
def test_to_cuda_keeps_views_and_training():
    fm = FlatModel(_tiny()).to("cuda")
    assert fm.is_aliased()
    opt = torch.optim.SGD(fm.module.parameters(), lr=0.1)
    x, y = _batch()
    before = fm.flat.clone()
    nn.functional.cross_entropy(fm.module(x.cuda()), y.cuda()).backward()
    opt.step()
    assert fm.is_aliased() and not torch.equal(before, fm.flat)


def test_tied_weights_appear_once():
    emb = nn.Linear(4, 4, bias=False)
    net = nn.Sequential(emb, nn.ReLU(), emb)
    fm = FlatModel(net)
    assert fm.names == ("0.weight",) and fm.numel == 16
    fm.flat.fill_(1.0)
    assert torch.all(net[2].weight == 1.0)


def test_second_flatmodel_takes_over_grad_hooks():
    net = _tiny()
    first = FlatModel(net)
    second = FlatModel(net)
    torch.optim.SGD(net.parameters(), lr=0.1).zero_grad()
    x, y = _batch()
    nn.functional.cross_entropy(net(x), y).backward()
    assert second.is_aliased()
    assert second.grad.any() and not first.grad.any()


def test_zoo_model_flattens_with_state_dict_names():
    net = build_model("resnet18_cifar", (3, 16, 16), 10, seed=0, width=8)
    fm = FlatModel(net)
    sd = net.state_dict()
    assert set(fm.names) == {k for k, v in sd.items() if v.is_floating_point()}
    assert not any(k.endswith("num_batches_tracked") for k in sd)
    assert torch.equal(fm.flat, _concat(fm))
