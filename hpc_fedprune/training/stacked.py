"""The forward pass of G copies of a plain network at once, each with its own weights.

For networks that are a sequence of Conv2d, Linear, ReLU, pooling and Flatten layers (the
zoo's ``mlp``, ``lenet5``, ``cnn``, ``small_cnn``), `stacked_forward` runs G clients' batches
through G clients' weights with one kernel call per layer, in layouts that stay contiguous:

- images as ``(B, G * C, H, W)``: a convolution is one grouped convolution (``groups=G``),
  ReLU and pooling work per channel and need no reshaping;
- vectors as ``(G, B, F)``: a linear layer is one ``baddbmm``.

``torch.func.vmap`` computes the same thing for any network, but on the CPU its batched
convolution keeps permuted, non-contiguous activations, whose ReLU backward and copies cost
more than the convolutions themselves (benchmarks/README.md, "Grouped training").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

_ELEMENTWISE = (nn.ReLU, nn.MaxPool2d, nn.AvgPool2d, nn.AdaptiveAvgPool2d, nn.Identity)


def stacked_plan(module: nn.Module) -> list[tuple[str, nn.Module]] | None:
    """The network as ``(qualified name, layer)`` in forward order, or None if unsupported.

    Supported: a module whose forward is ``features`` then ``classifier`` (the zoo's conv
    classifiers) or ``net`` (the zoo's MLP), each an ``nn.Sequential`` of the layer types
    above; convolutions with ``groups=1`` and zero padding; Flatten of all but the batch dim.
    """
    if isinstance(getattr(module, "features", None), nn.Sequential) and isinstance(
        getattr(module, "classifier", None), nn.Sequential
    ):
        parts = ["features", "classifier"]
    elif isinstance(getattr(module, "net", None), nn.Sequential):
        parts = ["net"]
    else:
        return None
    names = {id(m): name for name, m in module.named_modules()}
    plan = [(names[id(m)], m) for part in parts for m in getattr(module, part)]
    for _, layer in plan:
        if isinstance(layer, nn.Conv2d):
            if layer.groups != 1 or layer.padding_mode != "zeros":
                return None
        elif isinstance(layer, nn.Flatten):
            if layer.start_dim != 1 or layer.end_dim != -1:
                return None
        elif not isinstance(layer, (nn.Linear, *_ELEMENTWISE)):
            return None
    return plan


def stacked_forward(
    plan: list[tuple[str, nn.Module]], weights: dict[str, torch.Tensor], x: torch.Tensor
) -> torch.Tensor:
    """Outputs ``(G, B, out)`` of G clients for inputs ``x`` of shape ``(G, B, *sample)``.

    ``weights`` maps each parameter's name to the stacked ``(G, *shape)`` tensor.
    """
    g, b = x.shape[:2]
    images = x.dim() > 3
    h = x.transpose(0, 1).reshape(b, g * x.shape[2], *x.shape[3:]) if images else x
    for name, layer in plan:
        if isinstance(layer, nn.Conv2d):
            w, bias = weights[f"{name}.weight"], weights.get(f"{name}.bias")
            h = F.conv2d(
                h,
                w.reshape(-1, *w.shape[2:]),
                None if bias is None else bias.reshape(-1),
                layer.stride,
                layer.padding,
                layer.dilation,
                groups=g,
            )
        elif isinstance(layer, nn.Flatten):
            if images:  # (B, G * C, H, W) -> (G, B, C * H * W)
                h = h.reshape(b, g, -1).transpose(0, 1)
                images = False
            else:
                h = h.reshape(g, b, -1)
        elif isinstance(layer, nn.Linear):
            w, bias = weights[f"{name}.weight"], weights.get(f"{name}.bias")
            if bias is None:
                h = torch.bmm(h, w.transpose(1, 2))
            else:
                h = torch.baddbmm(bias.unsqueeze(1), h, w.transpose(1, 2))
        else:
            h = layer(h)
    return h
