"""Parameters and FLOPs of a network for one sample, dense and under a mask.

Convention
    ``flops = 2 x MACs`` (one multiply and one add per multiply-accumulate) of the
    convolution and linear layers, for ONE sample of the input shape, forward pass only. A
    conv or linear weight entry does one MAC per output position of its layer (the output's
    spatial size; 1 for a linear layer), padding positions included. Biases, normalisation,
    activations, pooling and residual additions are not counted. ``params`` counts every
    parameter entry (weights, biases, normalisation scales and shifts; running statistics
    are buffers, not parameters).

Layers
    One row per module that owns parameters, in the flat model's order, named as in the
    module tree (``features.0``, ``classifier.1``, ...). Normalisation layers are rows with
    parameters and no FLOPs.

Under a mask (the global mask over the flat model; pruned entries are zero)
    ``params_effective`` counts the kept parameter entries. ``flops_effective`` counts, for
    every conv and linear layer, its output positions times its USEFUL kept weights: a kept
    weight is useless when it reads an input channel (or unit) that is always zero, or
    writes an output unit that no later layer reads. So removing a whole neuron or filter
    (AutoFLIP's hybrid option) also removes the next layer's work on it, and a unit whose
    outgoing weights are all pruned stops costing its incoming ones. A unit is zero when
    its bias is pruned (or absent) and none of its kept weights reads a non-zero input.
    This propagation needs to know where each layer's output goes, so it is applied only
    to networks that are a plain chain of modules (each module's input is the previous
    module's output, and the network returns the last one's): every zoo network except
    ``resnet18_cifar``. Between two conv/linear layers it passes only through modules that
    keep a zero channel zero (ReLU, pooling, flatten, dropout, identity, instance norm
    without affine parameters); any other module in between (batch or group norm) stops
    it. Elsewhere every kept weight counts (unstructured sparsity: FLOPs fall with the kept
    weights, the usual sparse-compute estimate).

The dense counts come from one forward pass of a zero sample with hooks (shapes only), made
once; the per-round counts are a few reductions of the mask per layer.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn

from .flat import FlatModel, TensorInfo
from .layers import KeyedDropout

__all__ = ["CONVENTION", "LayerCost", "ModelCost", "model_cost"]

CONVENTION = (
    "per sample, forward pass; flops = 2 x MACs of conv and linear layers (biases, norms, "
    "activations, pooling not counted); params = every parameter entry"
)

# Modules that map an all-zero channel to an all-zero channel (and keep channels apart).
_ZERO_PRESERVING = (
    nn.ReLU,
    nn.modules.pooling._MaxPoolNd,
    nn.modules.pooling._AvgPoolNd,
    nn.modules.pooling._AdaptiveAvgPoolNd,
    nn.modules.pooling._AdaptiveMaxPoolNd,
    nn.Flatten,
    nn.Identity,
    nn.modules.dropout._DropoutNd,
    KeyedDropout,
)
_WEIGHTED = (nn.modules.conv._ConvNd, nn.Linear)


@dataclass(frozen=True)
class LayerCost:
    """Dense cost of one module that owns parameters.

    Attributes
    ----------
    name : str
        Module name in the network (``features.0``).
    params : int
        Parameter entries of the module.
    macs : int
        Multiply-accumulates per sample (0 unless conv or linear).
    positions : int
        Output positions per weight entry (conv: output spatial size; linear: 1; 0 for
        modules without FLOPs).
    tensors : tuple of TensorInfo
        The module's parameters in the flat model.
    weight : TensorInfo or None
        The conv or linear weight.
    bias : TensorInfo or None
        Its bias.
    """

    name: str
    params: int
    macs: int
    positions: int
    tensors: tuple[TensorInfo, ...] = field(repr=False)
    weight: TensorInfo | None = field(default=None, repr=False)
    bias: TensorInfo | None = field(default=None, repr=False)

    @property
    def flops(self) -> int:
        """``2 * macs``."""
        return 2 * self.macs


@dataclass(frozen=True)
class _Link:
    """Layer ``consumer``'s inputs come from layer ``producer``, ``repeat`` columns per unit."""

    producer: int
    consumer: int
    repeat: int


class ModelCost:
    """Per-layer parameters and FLOPs of a network; effective counts under a mask.

    Build with `model_cost`. ``links`` is None where the network is not a plain chain (no
    propagation of removed units).
    """

    def __init__(
        self, layers: list[LayerCost], links: list[_Link] | None, order: list[int]
    ) -> None:
        self.layers = layers
        self.links = links
        self.order = order  # conv/linear layers in the order the forward pass runs them
        self._cache: tuple[torch.Tensor, int, tuple[np.ndarray, np.ndarray]] | None = None

    @property
    def names(self) -> list[str]:
        """Layer names, in row order."""
        return [layer.name for layer in self.layers]

    @property
    def params_dense(self) -> int:
        return sum(layer.params for layer in self.layers)

    @property
    def flops_dense(self) -> int:
        return sum(layer.flops for layer in self.layers)

    def dense_table(self) -> dict[str, np.ndarray]:
        """``layer`` (names), ``params`` and ``flops`` (int64) per layer."""
        return {
            "layer": np.array(self.names, dtype=object),
            "params": np.array([layer.params for layer in self.layers], dtype=np.int64),
            "flops": np.array([layer.flops for layer in self.layers], dtype=np.int64),
        }

    def round_metrics(self, mask: torch.Tensor | None) -> dict[str, float]:
        """``params_dense``, ``params_effective``, ``flops_dense``, ``flops_effective``."""
        params, flops = self.effective(mask)
        return {
            "params_dense": float(self.params_dense),
            "params_effective": float(params.sum()),
            "flops_dense": float(self.flops_dense),
            "flops_effective": float(flops.sum()),
        }

    def layer_rows(self, mask: torch.Tensor | None) -> dict[str, np.ndarray]:
        """``params_effective`` and ``flops_effective`` per layer (one run-file row each)."""
        params, flops = self.effective(mask)
        return {"params_effective": params, "flops_effective": flops}

    def effective(self, mask: torch.Tensor | None) -> tuple[np.ndarray, np.ndarray]:
        """Kept parameters and useful FLOPs per layer under ``mask`` (module docstring).

        The result for the last mask object is kept until the mask is modified in place
        (its version counter), so asking twice in a round costs one computation.

        Parameters
        ----------
        mask : torch.Tensor or None
            Bool over the flat model; None: dense.

        Returns
        -------
        params, flops : numpy.ndarray
            int64, one per layer.
        """
        if mask is None:
            dense = self.dense_table()
            return dense["params"], dense["flops"]
        if self._cache is not None:
            last, version, result = self._cache
            if last is mask and version == mask._version:
                return result
        result = self._effective(mask)
        self._cache = (mask, mask._version, result)
        return result

    def _effective(self, mask: torch.Tensor) -> tuple[np.ndarray, np.ndarray]:
        counts = [
            torch.count_nonzero(mask[t.offset : t.stop])
            for layer in self.layers
            for t in layer.tensors
        ]
        kept = dict(zip((t.name for layer in self.layers for t in layer.tensors), counts))
        useful = self._useful_weights(mask, kept)
        host = torch.stack(counts + useful).cpu().numpy().astype(np.int64)
        params = np.zeros(len(self.layers), dtype=np.int64)
        i = 0
        for j, layer in enumerate(self.layers):
            params[j] = int(np.sum(host[i : i + len(layer.tensors)]))
            i += len(layer.tensors)
        flops = np.zeros(len(self.layers), dtype=np.int64)
        weighted = [j for j, layer in enumerate(self.layers) if layer.weight is not None]
        for j, value in zip(weighted, host[i:], strict=True):
            flops[j] = 2 * self.layers[j].positions * int(value)
        return params, flops

    def _useful_weights(self, mask: torch.Tensor, kept: dict) -> list[torch.Tensor]:
        """Per conv/linear layer (in layer order): its number of useful kept weights.

        ``kept``: tensor name -> its kept entries (counted already). Bool tensors are
        reduced and combined through uint8 views (``amax``, products), several times faster
        than ``any`` and ``&`` on a CPU.
        """
        weighted = [j for j, layer in enumerate(self.layers) if layer.weight is not None]
        views = {}  # layer -> its weight mask as (out, in, kernel entries), bool
        for j in weighted:
            w = self.layers[j].weight
            views[j] = mask[w.offset : w.stop].view(w.shape[0], w.shape[1], -1)
        if self.links is None:
            return [kept[self.layers[j].weight.name] for j in weighted]
        # (out, in): some kernel entry of the pair kept (a linear weight is its own mask)
        pairs = {j: v[:, :, 0] if v.shape[2] == 1 else _any(v, 2) for j, v in views.items()}
        into = {link.consumer: link for link in self.links}
        out_of = {link.producer: link for link in self.links}
        alive_in: dict[int, torch.Tensor | None] = {}  # None: every input may be non-zero
        alive_out: dict[int, torch.Tensor] = {}
        for j in self.order:  # forward: which units can be non-zero
            link = into.get(j)
            alive = None
            if link is not None:
                alive = alive_out[link.producer].repeat_interleave(link.repeat)
                if bool(alive.all()):
                    alive = None
            alive_in[j] = alive
            reads = _any(pairs[j] if alive is None else pairs[j] & alive[None, :], 1)
            bias = self.layers[j].bias
            alive_out[j] = reads if bias is None else reads | mask[bias.offset : bias.stop]
        needed_out: dict[int, torch.Tensor | None] = {}  # None: every unit is read
        for j in reversed(self.order):  # backward: which units some later layer reads
            link = out_of.get(j)
            needed = None
            if link is not None:
                c = link.consumer
                read = pairs[c] if needed_out[c] is None else pairs[c] & needed_out[c][:, None]
                needed = _any(_any(read, 0).view(-1, link.repeat), 1)
                if bool(needed.all()):
                    needed = None
            needed_out[j] = needed
        useful = []
        for j in weighted:
            if needed_out[j] is None and alive_in[j] is None:
                useful.append(kept[self.layers[j].weight.name])
                continue
            v = views[j].view(torch.uint8)  # products of uint8: faster than bool '&'
            if needed_out[j] is not None:
                v = v * needed_out[j].view(torch.uint8)[:, None, None]
            if alive_in[j] is not None:
                v = v * alive_in[j].view(torch.uint8)[None, :, None]
            useful.append(torch.count_nonzero(v))
        return useful


def model_cost(flat_model: FlatModel, input_shape: tuple[int, ...]) -> ModelCost:
    """The cost table of ``flat_model`` for one sample of ``input_shape`` (no batch axis).

    Runs one forward pass of a zero sample in eval mode (weights and buffers untouched;
    the module's training flag is restored) to learn each layer's output size and whether
    the network is a plain chain.
    """
    module = flat_model.module
    owners = _owners(flat_model)
    records: list[tuple[nn.Module, torch.Tensor, torch.Tensor]] = []
    leaves = [m for m in module.modules() if not list(m.children())]

    def hook(mod, args, out):
        records.append((mod, args[0] if args else None, out))

    handles = [leaf.register_forward_hook(hook) for leaf in leaves]
    was_training = module.training
    try:
        module.eval()
        with torch.no_grad():
            x = torch.zeros((1, *input_shape), device=flat_model.flat.device)
            result = module(x)
    finally:
        for h in handles:
            h.remove()
        module.train(was_training)
    positions: dict[int, int] = {}
    for mod, _, out in records:
        if isinstance(mod, _WEIGHTED) and isinstance(out, torch.Tensor):
            positions[id(mod)] = out.numel() // int(mod.weight.shape[0])
    layers = []
    index_of: dict[int, int] = {}
    for name, (mod, tensors) in owners.items():
        weight = bias = None
        pos = 0
        if isinstance(mod, _WEIGHTED):
            by_local = {t.name.rsplit(".", 1)[-1]: t for t in tensors}
            weight, bias = by_local.get("weight"), by_local.get("bias")
            pos = positions.get(id(mod), 0)
        macs = pos * (weight.numel if weight is not None else 0)
        if weight is not None:
            index_of[id(mod)] = len(layers)
        params = sum(t.numel for t in tensors)
        layers.append(LayerCost(name, params, macs, pos, tuple(tensors), weight, bias))
    order = list(dict.fromkeys(index_of[id(m)] for m, _, _ in records if id(m) in index_of))
    links = _links(records, index_of, layers) if _is_chain(records, result) else None
    return ModelCost(layers, links, order)


def _owners(flat_model: FlatModel) -> dict[str, tuple[nn.Module, list[TensorInfo]]]:
    """Module name -> (module, its parameters in the flat layout), in layout order."""
    modules = dict(flat_model.module.named_modules())
    out: dict[str, tuple[nn.Module, list[TensorInfo]]] = {}
    for info in flat_model.layout:
        if info.kind == "buffer":
            continue
        owner = info.name.rsplit(".", 1)[0] if "." in info.name else ""
        if owner not in out:
            out[owner] = (modules[owner], [])
        out[owner][1].append(info)
    return out


def _is_chain(records, result) -> bool:
    """Each leaf ran once, on the previous leaf's output, and the net returns the last one's."""
    if not records:
        return False
    if len({id(mod) for mod, _, _ in records}) != len(records):
        return False
    for (_, _, prev_out), (_, inp, _) in zip(records, records[1:]):
        if inp is not prev_out:
            return False
    last = records[-1][2]
    return (
        isinstance(result, torch.Tensor)
        and isinstance(last, torch.Tensor)
        and result.numel() == last.numel()
        and result.data_ptr() == last.data_ptr()
    )


def _links(records, index_of: dict[int, int], layers: list[LayerCost]) -> list[_Link]:
    """Producer -> consumer links between conv/linear layers of a chain (module docstring)."""
    links = []
    producer = None  # index of the last conv/linear layer whose zeros reach here
    for mod, _, _ in records:
        if isinstance(mod, _WEIGHTED) and id(mod) in index_of:
            j = index_of[id(mod)]
            weight = layers[j].weight
            groups = getattr(mod, "groups", 1)
            if producer is not None and groups == 1:
                units = layers[producer].weight.shape[0]
                columns = weight.shape[1]
                if columns % units == 0:
                    links.append(_Link(producer, j, columns // units))
            producer = j
        elif not _keeps_zero(mod):
            producer = None
    return links


def _keeps_zero(mod: nn.Module) -> bool:
    if isinstance(mod, nn.modules.instancenorm._InstanceNorm):
        return not mod.affine
    return isinstance(mod, _ZERO_PRESERVING)


def _any(x: torch.Tensor, dim: int) -> torch.Tensor:
    """``x.any(dim)`` for a bool tensor, through a uint8 view."""
    return x.view(torch.uint8).amax(dim=dim).bool()
