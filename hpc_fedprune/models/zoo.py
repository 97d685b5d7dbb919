"""The model registry: build any zoo network by name, with a seeded, device-independent init.

``build_model(name, input_shape, num_classes, seed=...)`` constructs the network on the
``meta`` device (so construction draws nothing from torch's global generator and allocates
nothing), materialises it on the CPU and writes every tensor from
``torch_generator(seed, Stream.MODEL_INIT)``. The same seed gives bit-identical weights on
every rank and machine; move it with `FlatModel` afterwards.
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from ..errors import InputError
from ..registry import MODELS
from ..rng import Stream, torch_generator
from . import nets
from .init import INIT_SCHEMES, init_weights_

__all__ = ["MODEL_NAMES", "ModelSpec", "build_model", "model_options", "register_model"]


@dataclass(frozen=True)
class ModelSpec:
    """A registry entry.

    Attributes
    ----------
    cls : type
        The network class (takes ``input_shape, num_outputs, *, regression, **options``).
    input_rank : int or None
        Number of dimensions of one sample (3 for ``(C, H, W)``, 4 for ``(C, D, H, W)``),
        ``None`` for any (the MLP flattens).
    init : str
        Default init scheme (see `init_weights_`), chosen to match the source papers' code.
    default_input : tuple of int
        The input shape the model is usually run with (used by tests and examples).
    """

    cls: type[nn.Module]
    input_rank: int | None
    init: str
    default_input: tuple[int, ...]


def register_model(
    name: str,
    *,
    init: str = "torch",
    input_rank: int | None = None,
    default_input: tuple[int, ...] = (1, 28, 28),
):
    """Class decorator adding a network to `hpc_fedprune.registry.MODELS` as ``name``.

    The class takes ``(input_shape, num_outputs, *, regression, **options)``; its
    keyword-only parameters after ``regression`` are its options (see `model_options`).

    Parameters
    ----------
    name : str
        The ``model.name`` that selects it.
    init : {'torch', 'glorot', 'kaiming', 'sparse_kaiming'}
        Default init scheme.
    input_rank : int, optional
        Dimensions of one sample it takes (3 for ``(C, H, W)``); ``None``: any.
    default_input : tuple of int
        The input shape it is usually run with.
    """

    def add(cls: type[nn.Module]) -> type[nn.Module]:
        MODELS.add(name, ModelSpec(cls, input_rank, init, tuple(default_input)), cls.__module__)
        return cls

    return add


# FedSparsify's Keras models: Glorot uniform.
register_model("mlp", init="glorot", default_input=(1, 28, 28))(nets.MLP)
# FedDIP's PyTorch models: PyTorch's default init.
register_model("lenet5", input_rank=3, default_input=(1, 28, 28))(nets.LeNet5)
# AutoFLIP's TwoCNN: xavier.
register_model("cnn", init="glorot", input_rank=3, default_input=(1, 28, 28))(nets.CNN)
register_model("small_cnn", input_rank=3, default_input=(3, 32, 32))(nets.SmallCNN)
register_model("alexnet_cifar", input_rank=3, default_input=(3, 32, 32))(nets.AlexNetCIFAR)
register_model("resnet18_cifar", input_rank=3, default_input=(3, 32, 32))(nets.ResNet18CIFAR)
register_model("vgg11", input_rank=3, default_input=(3, 32, 32))(nets.VGG11)
register_model("cnn3d", init="glorot", input_rank=4, default_input=(1, 91, 109, 91))(nets.CNN3D)

#: The built-in networks (plug-ins may add more: ``MODELS.names()``).
MODEL_NAMES: tuple[str, ...] = MODELS.names()


def _spec(name: str) -> ModelSpec:
    return MODELS.get(name)


def model_options(name: str) -> dict[str, object]:
    """The options a model accepts, with their defaults.

    Parameters
    ----------
    name : str
        A name from `MODEL_NAMES`.

    Returns
    -------
    dict
        Option name -> default value (``init`` included).
    """
    sig = inspect.signature(_spec(name).cls.__init__)
    options = {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind is inspect.Parameter.KEYWORD_ONLY and p.name != "regression"
    }
    options["init"] = _spec(name).init
    return options


def build_model(
    name: str,
    input_shape: Sequence[int],
    num_classes: int,
    *,
    seed: int,
    init: str | None = None,
    **options: object,
) -> nn.Module:
    """Build a zoo network with a seeded initialisation, on the CPU.

    Parameters
    ----------
    name : str
        A registered network: ``mlp``, ``lenet5``, ``cnn``, ``small_cnn``,
        ``alexnet_cifar``, ``resnet18_cifar``, ``vgg11``, ``cnn3d``, or a plug-in's.
    input_shape : sequence of int
        Shape of one sample without the batch dimension: ``(C, H, W)`` for the 2-D nets,
        ``(C, D, H, W)`` for ``cnn3d``, anything for ``mlp``.
    num_classes : int
        Number of classes; 0 means regression (one output, squeezed to ``(batch,)``).
    seed : int
        The run's seed; weights come from ``torch_generator(seed, Stream.MODEL_INIT)``.
    init : {'torch', 'glorot', 'kaiming'}, optional
        Override the model's default init scheme.
    **options
        Model options, see `model_options` (e.g. ``hidden=[128, 128]`` for ``mlp``,
        ``norm='group'`` for ``resnet18_cifar``, ``width=0.25`` for ``cnn3d``).

    Returns
    -------
    torch.nn.Module
        The network in training mode, on the CPU, float32.

    Raises
    ------
    InputError
        Unknown name, unknown option, bad init scheme, or an input shape the model cannot
        take (wrong rank, too small).
    """
    spec = _spec(name)
    shape = tuple(int(d) for d in input_shape)
    if not shape or any(d <= 0 for d in shape):
        raise InputError(f"model {name!r}: input shape must be positive sizes, got {shape}")
    if spec.input_rank is not None and len(shape) != spec.input_rank:
        raise InputError(
            f"model {name!r} takes inputs of {spec.input_rank} dimensions "
            f"(e.g. {spec.default_input}), got {shape}"
        )
    if int(num_classes) != num_classes or num_classes < 0:
        raise InputError(f"num_classes must be a non-negative integer, got {num_classes!r}")
    allowed = model_options(name)
    unknown = sorted(set(options) - set(allowed))
    if unknown:
        raise InputError(
            f"model {name!r} has no option(s) {', '.join(unknown)}; "
            f"options: {', '.join(sorted(allowed))}"
        )
    scheme = spec.init if init is None else init
    if scheme not in INIT_SCHEMES:
        raise InputError(f"unknown init {scheme!r}; known: {', '.join(INIT_SCHEMES)}")

    regression = int(num_classes) == 0
    with torch.device("meta"):
        model = spec.cls(shape, max(int(num_classes), 1), regression=regression, **options)
    # Storage for every meta tensor, uninitialised as `Module.to_empty` gives it; but made
    # with `torch.empty`, because `to_empty`'s `empty_like` of a meta tensor goes through
    # torch's reference implementations, whose import (sympy among it) took 1-2.5 s in
    # every process.
    model = model._apply(lambda t: torch.empty(t.shape, dtype=t.dtype, device="cpu"))
    init_weights_(model, torch_generator(seed, Stream.MODEL_INIT), scheme)
    post_init = getattr(model, "post_init_", None)
    if post_init is not None:
        post_init()
    return model.train()
