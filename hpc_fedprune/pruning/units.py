"""Whole units of a network: what must go with an output neuron or filter for it to be gone.

Structured pruning removes a unit (row ``i`` of a linear weight, filter ``i`` of a conv
weight). The unit is really gone only when nothing downstream still sees it: its incoming
weights and its bias entry, the scale and shift of the per-channel norm layer behind it
(a BatchNorm shift alone would turn a zero channel into a constant), and the input
columns of the next conv/linear layer that read it. With all of them zero, the channel is
zero after the norm (train or eval mode), stays zero through ReLU, pooling and dropout,
and the next layer neither reads it nor receives gradient through it.

`unit_layers` finds the layers where this is well defined by tracing the network
(``torch.fx``, every module without children a leaf): from a conv/linear layer the path
to the next conv/linear layer may pass only through an affine per-channel BatchNorm,
ReLU-type activations, pooling, dropout and a flatten, each with a single user. A layer
whose output is also used elsewhere (a residual sum, a concatenation, the network's
output) or goes through a group or layer norm has no removable units. A flatten between
a conv and a linear layer gives each channel ``in_features / channels`` input columns.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import torch
from torch import fx, nn

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = ["UnitLayer", "removal_mask", "unit_layers"]

# Modules a zero channel passes through as a zero channel (dropout: KeyedDropout too).
_ZERO_PRESERVING = (
    nn.ReLU,
    nn.ReLU6,
    nn.LeakyReLU,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.modules.dropout._DropoutNd,
    nn.Identity,
)
_ZERO_PRESERVING_NAMES = ("KeyedDropout",)
_ZERO_PRESERVING_FUNCTIONS = (torch.relu, nn.functional.relu)


@dataclass(frozen=True)
class UnitLayer:
    """A layer whose units can be removed whole, and what goes with each unit.

    Attributes
    ----------
    weight : TensorInfo
        The layer's weight, units along dimension 0.
    bias : TensorInfo or None
        Its bias.
    norm : tuple of TensorInfo
        The scale and shift of the per-channel norm layer behind it (empty if none).
    next_weight : TensorInfo
        The weight of the layer that reads its output.
    span : int
        Input columns of ``next_weight`` per unit (1 for a conv or a linear layer reading
        it directly; the spatial size after a flatten).
    """

    weight: TensorInfo
    bias: TensorInfo | None
    norm: tuple[TensorInfo, ...]
    next_weight: TensorInfo
    span: int

    @property
    def units(self) -> int:
        """Units (output neurons or filters) of the layer."""
        return self.weight.shape[0]

    def tensors(self) -> tuple[TensorInfo, ...]:
        """Every tensor a removal touches."""
        own = (self.weight,) + ((self.bias,) if self.bias is not None else ())
        return own + self.norm + (self.next_weight,)

    def params_per_unit(self) -> int:
        """Entries removed with one unit (incoming, bias, norm, next layer's columns)."""
        per_row = self.weight.numel // self.units
        columns = self.next_weight.numel // self.units
        return per_row + (self.bias is not None) + len(self.norm) + columns


class _LeafTracer(fx.Tracer):
    """Every module without children is a leaf (custom layers such as KeyedDropout too)."""

    def is_leaf_module(self, m: nn.Module, qualname: str) -> bool:
        return len(list(m.children())) == 0 or super().is_leaf_module(m, qualname)


def _passes_zero(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        mod = modules[node.target]
        return isinstance(mod, _ZERO_PRESERVING) or type(mod).__name__ in _ZERO_PRESERVING_NAMES
    if node.op == "call_function":
        return node.target in _ZERO_PRESERVING_FUNCTIONS
    return node.op == "call_method" and node.target == "relu"


def _is_flatten(node: fx.Node, modules: dict[str, nn.Module]) -> bool:
    if node.op == "call_module":
        return isinstance(modules[node.target], nn.Flatten)
    return node.op == "call_function" and node.target is torch.flatten


def _layer(node: fx.Node, modules: dict[str, nn.Module]) -> nn.Module | None:
    """The conv (ungrouped) or linear module a node calls, if it calls one."""
    if node.op != "call_module":
        return None
    mod = modules[node.target]
    if isinstance(mod, nn.Linear):
        return mod
    if isinstance(mod, nn.modules.conv._ConvNd) and mod.groups == 1:
        return mod
    return None


def unit_layers(module: nn.Module, layout: Sequence[TensorInfo]) -> tuple[UnitLayer, ...]:
    """The network's layers with removable units, in flat order (see the module docstring).

    Parameters
    ----------
    module : torch.nn.Module
        The network (not run; only traced).
    layout : sequence of TensorInfo
        Its flat layout (tensor names as in ``state_dict``).

    Returns
    -------
    tuple of UnitLayer
        Empty when the network cannot be traced.
    """
    try:
        graph = _LeafTracer().trace(module)
    except Exception:  # noqa: BLE001 - an untraceable network simply has no units
        return ()
    modules = dict(module.named_modules())
    infos = {info.name: info for info in layout}
    out = []
    for node in graph.nodes:
        layer = _layer(node, modules)
        if layer is None:
            continue
        channels = layer.weight.shape[0]
        norm: list[str] = []
        flattened = False
        cur, consumer = node, None
        while consumer is None:
            users = list(cur.users)
            if len(users) != 1:
                break
            user = users[0]
            if _layer(user, modules) is not None:
                consumer = user
            elif user.op == "call_module" and isinstance(
                modules[user.target], nn.modules.batchnorm._BatchNorm
            ):
                bn = modules[user.target]
                if not bn.affine or bn.num_features != channels:
                    break
                norm.append(user.target)
                cur = user
            elif _is_flatten(user, modules):
                flattened = True
                cur = user
            elif _passes_zero(user, modules):
                cur = user
            else:
                break
        if consumer is None:
            continue
        nxt = modules[consumer.target]
        width = nxt.in_features if isinstance(nxt, nn.Linear) else nxt.in_channels
        if width % channels or (not flattened and width != channels):
            continue
        if isinstance(nxt, nn.modules.conv._ConvNd) and flattened:
            continue
        norms = tuple(
            infos[f"{n}.{p}"] for n in norm for p in ("weight", "bias") if f"{n}.{p}" in infos
        )
        out.append(
            UnitLayer(
                weight=infos[f"{node.target}.weight"],
                bias=infos.get(f"{node.target}.bias"),
                norm=norms,
                next_weight=infos[f"{consumer.target}.weight"],
                span=width // channels,
            )
        )
    return tuple(sorted(out, key=lambda u: u.weight.offset))


def removal_mask(layer: UnitLayer, gone: torch.Tensor, keep: torch.Tensor) -> None:
    """Clear in ``keep`` (a flat bool mask) every entry of the units ``gone`` removes.

    ``gone`` is a bool vector over the layer's units.
    """
    w = layer.weight
    keep[w.slice].view(layer.units, -1)[gone] = False
    if layer.bias is not None:
        keep[layer.bias.slice][gone] = False
    for info in layer.norm:
        keep[info.slice][gone] = False
    nxt = layer.next_weight
    columns = keep[nxt.slice].view(nxt.shape[0], layer.units, -1)
    columns[:, gone, :] = False
