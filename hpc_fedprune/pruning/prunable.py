"""The prunable set: which entries of the flat model a method may prune.

Presets (ALGORITHMS.md, Decisions and 2.3):

- ``conv_linear_weights``: conv and linear weights, biases and norm layers excluded (FedDIP);
- ``all_trainable``: every trainable parameter: kernels, biases, trainable norm
  parameters (FedSparsify);
- ``all_params``: every parameter, trainable or frozen (AutoFLIP).

Options remove tensors from the preset: ``exclude_first_last`` (the first and last
conv/linear layers, weights and biases; PruneTrain), ``exclude_bias`` (conv/linear biases),
``exclude_norm`` (norm weights and biases) and ``exclude_names`` (substrings of tensor names,
e.g. ``("shortcut",)`` to reproduce FedDIP's ResNet-18, which leaves the 1x1 shortcut convs
dense). Buffers (running statistics) are never prunable.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING

import torch

from ..errors import InputError

if TYPE_CHECKING:  # pruning depends on torch and numpy only; the layout is plain data
    from ..models.flat import TensorInfo

__all__ = ["PRUNABLE_PRESETS", "prunable_mask", "prunable_tensors", "tensors_in"]

_WEIGHT_KINDS = ("conv_weight", "linear_weight")

PRUNABLE_PRESETS = ("conv_linear_weights", "all_trainable", "all_params")


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
    if exclude_first_last:
        weight_layers = [i.layer for i in layout if i.kind in _WEIGHT_KINDS]
        if weight_layers:
            edge_layers = {min(weight_layers), max(weight_layers)}
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
    )
    total = max((i.stop for i in layout), default=0)
    mask = torch.zeros(total, dtype=torch.bool, device=device)
    for info in chosen:
        mask[info.slice] = True
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
