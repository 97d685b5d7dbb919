"""The network architectures of the zoo (construction only; weights are set in `init`).

Every network registers its modules in forward order (so a tensor's ``layer`` index in the
flat layout tells first from last layer) and ends in ``num_outputs`` units; a regression
network (``regression=True``) has one output and returns shape ``(batch,)``. Sizes that
depend on the input (the first linear layer after the convolutions) are computed from the
layer hyperparameters (`_out_shape`) before any weight exists.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from ..errors import InputError
from .layers import KeyedDropout

__all__ = [
    "MLP",
    "LeNet5",
    "CNN",
    "SmallCNN",
    "AlexNetCIFAR",
    "ResNet18CIFAR",
    "VGG11",
    "CNN3D",
]


def _tuple(value: int | Sequence[int], n: int) -> tuple[int, ...]:
    return tuple(value) if isinstance(value, (tuple, list)) else (int(value),) * n


def _window(size: int, kernel: int, stride: int, padding: int, dilation: int) -> int:
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def _out_shape(module: nn.Module, shape: tuple[int, ...]) -> tuple[int, ...]:
    """Shape of one sample after ``module`` (channels first), by arithmetic.

    Arithmetic rather than a dry run: a dry run on the ``meta`` device costs about two
    seconds of imports in every process, and one on real tensors would need real weights.
    """
    if hasattr(module, "out_shape"):
        return module.out_shape(shape)
    if isinstance(module, nn.Sequential):
        for child in module:
            shape = _out_shape(child, shape)
        return shape
    if isinstance(module, (nn.modules.conv._ConvNd, nn.modules.pooling._MaxPoolNd)):
        spatial = shape[1:]
        n = len(spatial)
        kernel = _tuple(module.kernel_size, n)
        stride = _tuple(module.stride or module.kernel_size, n)
        padding = _tuple(module.padding, n)
        dilation = _tuple(module.dilation, n)
        out = tuple(map(_window, spatial, kernel, stride, padding, dilation))
        channels = getattr(module, "out_channels", shape[0])
        shape = (channels, *out)
    elif isinstance(module, nn.modules.pooling._AdaptiveAvgPoolNd):
        n = len(shape) - 1
        target = _tuple(module.output_size, n)
        shape = (shape[0], *(s if t is None else t for s, t in zip(shape[1:], target, strict=True)))
    elif isinstance(module, nn.Flatten):
        return (math.prod(shape),)
    elif isinstance(module, nn.modules.instancenorm._InstanceNorm):
        if math.prod(shape[1:]) <= 1:
            raise InputError(f"instance norm needs more than one spatial element, got {shape}")
    elif not isinstance(
        module, (nn.ReLU, nn.Identity, nn.modules.batchnorm._BatchNorm, nn.GroupNorm)
    ):
        raise TypeError(f"_out_shape does not know {type(module).__name__}")
    if any(s < 1 for s in shape):
        raise InputError(f"feature map shrinks to {shape}")
    return shape


def _features_out(features: nn.Module, input_shape: Sequence[int], model: str) -> tuple[int, ...]:
    """Shape of one sample after ``features``; `InputError` if the input is too small."""
    try:
        return _out_shape(features, tuple(input_shape))
    except InputError as exc:
        raise InputError(
            f"model {model!r} does not fit input shape {tuple(input_shape)}: {exc}"
        ) from None


def _finish(out: torch.Tensor, regression: bool) -> torch.Tensor:
    return out.squeeze(-1) if regression else out


class MLP(nn.Module):
    """Fully connected ReLU network on the flattened input (FedSparsify's 784-128-128-10).

    Parameters
    ----------
    input_shape : sequence of int
        Shape of one sample (flattened).
    num_outputs : int
        Units of the last layer.
    hidden : sequence of int
        Widths of the hidden layers.
    regression : bool
        Squeeze the single output to shape ``(batch,)``.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        hidden: Sequence[int] = (128, 128),
        regression: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        prev = math.prod(input_shape)
        for width in hidden:
            layers += [nn.Linear(prev, int(width)), nn.ReLU()]
            prev = int(width)
        layers.append(nn.Linear(prev, num_outputs))
        self.net = nn.Sequential(*layers)
        self.regression = regression

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _finish(self.net(x), self.regression)


class _ConvClassifier(nn.Module):
    """``features`` (convolutions) then ``classifier`` (starts with Flatten)."""

    features: nn.Module
    classifier: nn.Module
    regression: bool

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return _finish(self.classifier(self.features(x)), self.regression)


class LeNet5(_ConvClassifier):
    """LeNet-5 as in FedDIP: conv 6@5x5 (pad 2), pool, conv 16@5x5, pool, FC 120-84-out.

    The first linear layer's width follows the input (400 for 28x28, 576 for 32x32).
    """

    def __init__(
        self, input_shape: Sequence[int], num_outputs: int, *, regression: bool = False
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 6, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(6, 16, 5),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n = math.prod(_features_out(self.features, input_shape, "lenet5"))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            nn.Linear(n, 120),
            nn.ReLU(),
            nn.Linear(120, 84),
            nn.ReLU(),
            nn.Linear(84, num_outputs),
        )
        self.regression = regression


class CNN(_ConvClassifier):
    """McMahan et al.'s two-conv CNN (AutoFLIP's TwoCNN).

    conv 5x5 ``hidden`` ('same' padding), pool, conv 5x5 ``2*hidden``, pool, adaptive
    average pool to ``pool_to`` x ``pool_to`` (AutoFLIP's; identity for 28x28 inputs), FC
    ``fc``, FC out. hidden = 32 gives about 1.66M parameters.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        hidden: int = 32,
        fc: int = 512,
        pool_to: int | None = 7,
        regression: bool = False,
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(input_shape[0], hidden, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(hidden, 2 * hidden, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(2),
        ]
        if pool_to is not None:
            layers.append(nn.AdaptiveAvgPool2d(pool_to))
        self.features = nn.Sequential(*layers)
        n = math.prod(_features_out(self.features, input_shape, "cnn"))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(n, fc), nn.ReLU(), nn.Linear(fc, num_outputs)
        )
        self.regression = regression


class SmallCNN(_ConvClassifier):
    """pfl-research's CIFAR-10 benchmark CNN: conv 32@3x3, pool, conv 64@3x3, pool, FC 64, out."""

    def __init__(
        self, input_shape: Sequence[int], num_outputs: int, *, regression: bool = False
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 32, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(32, 64, 3),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        n = math.prod(_features_out(self.features, input_shape, "small_cnn"))
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(n, 64), nn.ReLU(), nn.Linear(64, num_outputs)
        )
        self.regression = regression


class AlexNetCIFAR(_ConvClassifier):
    """FedDIP's CIFAR AlexNet (about 23M parameters at 32x32).

    conv 64@3x3 stride 2, pool, conv 192, pool, conv 384, conv 256, conv 256, pool, adaptive
    average pool 2x2, dropout, FC 1024-4096, dropout, FC 4096-4096, FC out. Dropout is
    `KeyedDropout`: set its generator per client before training.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        dropout: float = 0.5,
        regression: bool = False,
    ) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(input_shape[0], 64, 3, stride=2, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(64, 192, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(192, 384, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(384, 256, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(256, 256, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(2),
        )
        n = math.prod(_features_out(self.features, input_shape, "alexnet_cifar"))
        self.classifier = nn.Sequential(
            nn.Flatten(),
            KeyedDropout(dropout),
            nn.Linear(n, 4096),
            nn.ReLU(),
            KeyedDropout(dropout),
            nn.Linear(4096, 4096),
            nn.ReLU(),
            nn.Linear(4096, num_outputs),
        )
        self.regression = regression


def _norm2d(kind: str, channels: int, groups: int) -> nn.Module:
    if kind == "batch":
        # Explicit momentum: the flat model drops BatchNorm's integer batch counter.
        return nn.BatchNorm2d(channels, momentum=0.1)
    if kind == "group":
        return nn.GroupNorm(groups, channels)
    raise InputError(f"norm must be 'batch' or 'group', got {kind!r}")


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, norm: str, groups: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn1 = _norm2d(norm, c_out, groups)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.bn2 = _norm2d(norm, c_out, groups)
        self.relu = nn.ReLU()
        self.shortcut = nn.Sequential()
        if stride != 1 or c_in != c_out:
            # Named 'shortcut' (as in FedDIP's ResNet) so a name filter can exclude it.
            self.shortcut = nn.Sequential(
                nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
                _norm2d(norm, c_out, groups),
            )

    def out_shape(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Shape after the block (used by `_out_shape`)."""
        return _out_shape(nn.Sequential(self.conv1, self.conv2), shape)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + self.shortcut(x))


class ResNet18CIFAR(nn.Module):
    """ResNet-18 for small images: 3x3 stem without max-pool, 4 stages of 2 basic blocks.

    Parameters
    ----------
    input_shape : sequence of int
        ``(C, H, W)``.
    num_outputs : int
        Units of the classifier.
    norm : {'batch', 'group'}
        BatchNorm (momentum 0.1) or GroupNorm (``groups`` groups, as in non-IID FL studies).
    groups : int
        Groups of GroupNorm; every stage width must be divisible by it.
    width : int
        Channels of the first stage (64 in the paper; smaller for tests).
    regression : bool
        Squeeze the single output.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        norm: str = "batch",
        groups: int = 2,
        width: int = 64,
        regression: bool = False,
    ) -> None:
        super().__init__()
        widths = [width, 2 * width, 4 * width, 8 * width]
        if norm == "group" and any(w % groups for w in widths):
            raise InputError(f"resnet18_cifar: width {width} is not divisible by groups {groups}")
        self.conv1 = nn.Conv2d(input_shape[0], width, 3, padding=1, bias=False)
        self.bn1 = _norm2d(norm, width, groups)
        self.relu = nn.ReLU()
        blocks: list[nn.Module] = []
        c_in = width
        for i, c_out in enumerate(widths):
            for j in range(2):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(_BasicBlock(c_in, c_out, stride, norm, groups))
                c_in = c_out
        self.layers = nn.Sequential(*blocks)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.linear = nn.Linear(c_in, num_outputs)
        self.regression = regression
        _features_out(nn.Sequential(self.conv1, self.layers), input_shape, "resnet18_cifar")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.layers(self.relu(self.bn1(self.conv1(x))))
        out = torch.flatten(self.pool(out), 1)
        return _finish(self.linear(out), self.regression)


_VGG11 = (64, "M", 128, "M", 256, 256, "M", 512, 512, "M", 512, 512, "M")


class VGG11(_ConvClassifier):
    """VGG-11 for CIFAR: eight 3x3 convs (with BatchNorm by default), five pools, FC out.

    Needs inputs of at least 32x32 (five halvings).
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        norm: str | None = "batch",
        regression: bool = False,
    ) -> None:
        super().__init__()
        if norm not in ("batch", None, "none"):
            raise InputError(f"vgg11: norm must be 'batch' or 'none', got {norm!r}")
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for item in _VGG11:
            if item == "M":
                layers.append(nn.MaxPool2d(2))
                continue
            layers.append(nn.Conv2d(c_in, item, 3, padding=1))
            if norm == "batch":
                layers.append(nn.BatchNorm2d(item, momentum=0.1))
            layers.append(nn.ReLU())
            c_in = item
        self.features = nn.Sequential(*layers)
        n = math.prod(_features_out(self.features, input_shape, "vgg11"))
        self.classifier = nn.Sequential(nn.Flatten(), nn.Linear(n, num_outputs))
        self.regression = regression


class CNN3D(nn.Module):
    """FedSparsify's brain-age 3D CNN (MICCAI 2022), scaled by ``width`` and ``blocks``.

    ``blocks`` (default 5, the paper's) keeps the first blocks only, so small generated
    volumes (e.g. 16 x 20 x 16 with 3 blocks) fit a CPU test; every instance norm must
    still see more than one spatial element.

    Five blocks of [Conv3d 3x3x3 'same' (32, 64, 128, 256, 256 channels x width) -> instance
    norm without affine parameters (Keras BatchNorm over the spatial axes, always in
    training mode) -> MaxPool3d 2 -> ReLU], then Conv3d 1x1x1 (64 x width) -> instance norm
    -> ReLU -> global average pool (the paper's AvgPool3D (2,3,2) on 91x109x91 inputs) ->
    Conv3d 1x1x1 to the outputs. For regression the output bias starts at ``output_bias``
    (the mean age) after the seeded init.
    """

    def __init__(
        self,
        input_shape: Sequence[int],
        num_outputs: int,
        *,
        width: float = 1.0,
        blocks: int = 5,
        output_bias: float = 62.68,
        regression: bool = True,
    ) -> None:
        super().__init__()
        if width <= 0:
            raise InputError(f"cnn3d: width must be positive, got {width}")
        if not 1 <= int(blocks) <= 5:
            raise InputError(f"cnn3d: blocks must be in 1..5, got {blocks}")
        chans = [max(1, round(c * width)) for c in (32, 64, 128, 256, 256)][: int(blocks)]
        layers: list[nn.Module] = []
        c_in = input_shape[0]
        for c_out in chans:
            layers += [
                nn.Conv3d(c_in, c_out, 3, padding=1),
                nn.InstanceNorm3d(c_out, eps=1e-3, affine=False, track_running_stats=False),
                nn.MaxPool3d(2),
                nn.ReLU(),
            ]
            c_in = c_out
        head = max(1, round(64 * width))
        layers += [
            nn.Conv3d(c_in, head, 1),
            nn.InstanceNorm3d(head, eps=1e-3, affine=False, track_running_stats=False),
            nn.ReLU(),
            nn.AdaptiveAvgPool3d(1),
        ]
        self.features = nn.Sequential(*layers)
        self.output = nn.Conv3d(head, num_outputs, 1)
        self.regression = regression
        self.output_bias = float(output_bias)
        _features_out(self.features, input_shape, "cnn3d")

    @torch.no_grad()
    def post_init_(self) -> None:
        """Start the regression output at the mean target (run after the seeded init)."""
        if self.regression:
            self.output.bias.fill_(self.output_bias)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.flatten(self.output(self.features(x)), 1)
        return _finish(out, self.regression)
