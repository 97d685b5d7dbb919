"""The prunable set: which entries of the flat model a method may prune.

Presets (docs/methods.md, "Prunable set"):

- ``conv_linear_weights``: conv and linear weights, biases and norm layers excluded (FedDIP);
- ``all_trainable``: every trainable parameter: kernels, biases, trainable norm
  parameters (FedSparsify);
- ``all_params``: every parameter, trainable or frozen (AutoFLIP).

Options remove tensors from the preset: ``exclude_first`` / ``exclude_last`` (every tensor
of the first / last conv/linear layer; ``exclude_first_last`` both, as PruneTrain),
``exclude_bias`` (conv/linear biases), ``exclude_norm`` (norm weights and biases) and
``exclude_names`` (substrings of tensor names, e.g. ``("shortcut",)`` to reproduce FedDIP's
ResNet-18, which leaves the 1x1 shortcut convs dense). Buffers (running statistics) are
never prunable.

`method_prunable` builds a method's set from its config section (``prunable``,
``exclude``, ``exclude_names``), so every method with a prunable set takes the same keys.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import InputError

if TYPE_CHECKING:  # pruning depends on torch and numpy only; the layout is plain data
    from ..models.flat import TensorInfo

__all__ = [
    "EXCLUSIONS",
    "PRUNABLE_PRESETS",
    "method_prunable",
    "prunable_mask",
    "prunable_tensors",
    "tensors_in",
]

_WEIGHT_KINDS = ("conv_weight", "linear_weight")

PRUNABLE_PRESETS = ("conv_linear_weights", "all_trainable", "all_params")
# What a method's ``exclude`` key may list (see `method_prunable`).
EXCLUSIONS = ("first", "last", "bias", "norm")


def _in_preset(info: TensorInfo, preset: str) -> bool:
    if info.kind == "buffer":
        return False
    if preset == "conv_linear_weights":
        return info.kind in _WEIGHT_KINDS
    if preset == "all_trainable":
        return info.trainable
    return True  # all_params


def prunable_tensors(
    layout: Sequence[TensorInfo],
    preset: str = "all_trainable",
    *,
    exclude_first_last: bool = False,
    exclude_bias: bool = False,
    exclude_norm: bool = False,
    exclude_names: Iterable[str] = (),
    exclude_first: bool = False,
    exclude_last: bool = False,
) -> tuple[TensorInfo, ...]:
    """The tensors of ``layout`` in the prunable set, in flat order.

    Parameters
    ----------
    layout : sequence of TensorInfo
        A `FlatModel`'s layout.
    preset : {'conv_linear_weights', 'all_trainable', 'all_params'}
        Base selection, see the module docstring.
    exclude_first_last : bool
        Drop every tensor of the first and of the last conv/linear layer (the smallest and
        largest ``layer`` index among conv/linear weights).
    exclude_first, exclude_last : bool
        Drop every tensor of the first (or of the last) conv/linear layer only.
    exclude_bias : bool
        Drop conv/linear biases.
    exclude_norm : bool
        Drop norm-layer weights and biases.
    exclude_names : iterable of str
        Drop tensors whose name contains any of these substrings.

    Returns
    -------
    tuple of TensorInfo

    Raises
    ------
    InputError
        For an unknown preset.
    """
    if preset not in PRUNABLE_PRESETS:
        raise InputError(
            f"unknown prunable preset {preset!r}; known: {', '.join(PRUNABLE_PRESETS)}"
        )
    patterns = tuple(exclude_names)
    if isinstance(exclude_names, str):
        patterns = (exclude_names,)
    edge_layers: set[int] = set()
    weight_layers = [i.layer for i in layout if i.kind in _WEIGHT_KINDS]
    if weight_layers and (exclude_first_last or exclude_first):
        edge_layers.add(min(weight_layers))
    if weight_layers and (exclude_first_last or exclude_last):
        edge_layers.add(max(weight_layers))
    chosen = []
    for info in layout:
        if not _in_preset(info, preset):
            continue
        if info.layer in edge_layers:
            continue
        if exclude_bias and info.kind == "bias":
            continue
        if exclude_norm and info.kind in ("norm_weight", "norm_bias"):
            continue
        if any(p in info.name for p in patterns):
            continue
        chosen.append(info)
    return tuple(chosen)


def prunable_mask(
    layout: Sequence[TensorInfo],
    preset: str = "all_trainable",
    *,
    exclude_first_last: bool = False,
    exclude_bias: bool = False,
    exclude_norm: bool = False,
    exclude_names: Iterable[str] = (),
    exclude_first: bool = False,
    exclude_last: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """Bool vector over the flat model: True at prunable entries.

    Takes the same arguments as `prunable_tensors`, plus ``device`` for the result.
    The length is the layout's total (``FlatModel.numel``).
    """
    chosen = prunable_tensors(
        layout,
        preset,
        exclude_first_last=exclude_first_last,
        exclude_bias=exclude_bias,
        exclude_norm=exclude_norm,
        exclude_names=exclude_names,
        exclude_first=exclude_first,
        exclude_last=exclude_last,
    )
    total = max((i.stop for i in layout), default=0)
    mask = torch.zeros(total, dtype=torch.bool, device=device)
    for info in chosen:
        mask[info.slice] = True
    return mask


def method_prunable(
    layout: Sequence[TensorInfo],
    section,
    key: str,
    *,
    exclude_norm: bool = False,
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """A method's prunable set from its config section.

    Parameters
    ----------
    layout : sequence of TensorInfo
        The model's layout.
    section : config section
        Has ``prunable`` (a preset), ``exclude`` (a tuple of `EXCLUSIONS`: ``first``,
        ``last``, ``bias``, ``norm``) and ``exclude_names`` (name substrings).
    key : str
        The section's config path (``algorithm.feddip``), for error messages.
    exclude_norm : bool
        Also drop norm layers whatever the config says (SNIP scores connections only).
    device : torch.device or str, optional

    Raises
    ------
    InputError
        When an ``exclude_names`` entry matches no tensor of the model (a typo would
        otherwise change nothing, silently), or the set ends up empty.
    """
    exclude = set(section.exclude)
    names = tuple(section.exclude_names)
    for pattern in names:
        if not any(pattern in info.name for info in layout):
            raise InputError(
                f"{key}.exclude_names: {pattern!r} matches no tensor of the model "
                f"(names such as {', '.join(i.name for i in layout[:3])})"
            )
    mask = prunable_mask(
        layout,
        section.prunable,
        exclude_first="first" in exclude,
        exclude_last="last" in exclude,
        exclude_bias="bias" in exclude,
        exclude_norm=exclude_norm or "norm" in exclude,
        exclude_names=names,
        device=device,
    )
    if not bool(mask.any()):
        raise InputError(f"{key}: the exclusions leave nothing to prune")
    return mask


def tensors_in(
    layout: Sequence[TensorInfo], prunable: torch.Tensor
) -> list[tuple[TensorInfo, torch.Tensor]]:
    """Tensors with at least one prunable entry, each with its flat indices of those entries.

    Used by the per-tensor (layer-wise, ERK) functions; a tensor may be partly prunable.
    """
    out = []
    for info in layout:
        seg = prunable[info.slice]
        if bool(seg.any()):
            out.append((info, seg.nonzero().squeeze(1) + info.offset))
    return out
