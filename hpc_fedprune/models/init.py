"""Explicit, seeded weight initialisation for every tensor of a network.

Every parameter and buffer is written here from one ``torch.Generator`` (on the CPU),
visiting modules in registration order, so the initial model depends only on the seed:
not on the device, the rank, or the global random state. Networks are built on the
``meta`` device and materialised with ``to_empty`` before this runs, so nothing may be left
uninitialised: a module type this file does not know is an error.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .flat import _CONV_TYPES, _LINEAR_TYPES, _NORM_TYPES

__all__ = ["INIT_SCHEMES", "init_weights_"]

INIT_SCHEMES = ("torch", "glorot", "kaiming", "sparse_kaiming")


def _init_weight_bias(mod: nn.Module, gen: torch.Generator, scheme: str) -> None:
    weight = mod.weight
    bias = getattr(mod, "bias", None)
    if scheme == "torch":
        # PyTorch's own default for Conv/Linear (what FedDIP's and most PyTorch code use).
        nn.init.kaiming_uniform_(weight, a=math.sqrt(5), generator=gen)
        if bias is not None:
            fan_in, _ = nn.init._calculate_fan_in_and_fan_out(weight)
            bound = 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0
            nn.init.uniform_(bias, -bound, bound, generator=gen)
        return
    if scheme == "glorot":
        # Keras' default (FedSparsify's models) and AutoFLIP's xavier init.
        nn.init.xavier_uniform_(weight, gain=1.0, generator=gen)
    elif scheme == "kaiming":
        # He et al. for ReLU nets (torchvision's ResNet convs).
        nn.init.kaiming_normal_(weight, mode="fan_out", nonlinearity="relu", generator=gen)
    elif scheme == "sparse_kaiming":
        # He-normal on the fan-in (forward variance); a method that draws a random sparse
        # mask then rescales the kept weights by 1/sqrt(density) (pruning.sparse_init).
        nn.init.kaiming_normal_(weight, mode="fan_in", nonlinearity="relu", generator=gen)
    else:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(INIT_SCHEMES)}")
    if bias is not None:
        nn.init.zeros_(bias)


@torch.no_grad()
def init_weights_(module: nn.Module, generator: torch.Generator, scheme: str = "torch") -> None:
    """Initialise all parameters and buffers of ``module`` in place.

    Parameters
    ----------
    module : torch.nn.Module
        The network (on any device; values are drawn on the generator's device and copied).
    generator : torch.Generator
        Source of all random numbers, e.g. ``torch_generator(seed, Stream.MODEL_INIT)``.
    scheme : {'torch', 'glorot', 'kaiming', 'sparse_kaiming'}
        Conv/linear weight init: PyTorch's default (kaiming-uniform with a = sqrt(5), bias
        uniform in +-1/sqrt(fan_in)), Glorot uniform with zero bias, Kaiming normal
        (fan_out, ReLU) with zero bias, or Kaiming normal on the fan-in with zero bias
        (``sparse_kaiming``, the dense half of the sparse-aware init). Norm layers always
        start at weight 1, bias 0, running mean 0, running variance 1.

    Raises
    ------
    ValueError
        For an unknown scheme.
    TypeError
        When a module owns parameters of a type this function does not know.
    """
    if scheme not in INIT_SCHEMES:
        raise ValueError(f"unknown init scheme {scheme!r}; known: {', '.join(INIT_SCHEMES)}")
    for name, mod in module.named_modules():
        own_params = [p for p in mod._parameters.values() if p is not None]
        if isinstance(mod, _CONV_TYPES + _LINEAR_TYPES):
            if mod.weight.device != generator.device:
                # Draw on the generator's device so the values never depend on the target.
                tmp = _on(mod, generator.device)
                _init_weight_bias(tmp, generator, scheme)
                mod.weight.copy_(tmp.weight)
                if mod.bias is not None:
                    mod.bias.copy_(tmp.bias)
            else:
                _init_weight_bias(mod, generator, scheme)
        elif isinstance(mod, _NORM_TYPES):
            for p_name, p in mod._parameters.items():
                if p is not None:
                    p.fill_(1.0 if p_name == "weight" else 0.0)
            if isinstance(mod, nn.modules.batchnorm._NormBase) and mod.track_running_stats:
                mod.reset_running_stats()
        elif own_params:
            raise TypeError(
                f"init_weights_ does not know how to initialise {name!r} ({type(mod).__name__})"
            )


def _on(mod: nn.Module, device: torch.device) -> nn.Module:
    """A stand-in with the same weight/bias shapes on ``device``, to draw values on."""
    holder = nn.Module()
    holder.weight = nn.Parameter(torch.empty(mod.weight.shape, device=device))
    holder.bias = (
        nn.Parameter(torch.empty(mod.bias.shape, device=device)) if mod.bias is not None else None
    )
    return holder
