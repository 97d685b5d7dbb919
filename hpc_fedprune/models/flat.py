"""One flat buffer per model: every parameter and float buffer is a view into one 1-D tensor.

A `FlatModel` wraps an ``nn.Module`` so that

- ``flat`` (float32, 1-D) holds all parameters, in ``named_parameters()`` order, followed by
  all persistent floating-point buffers (BatchNorm running mean and variance), in
  ``named_buffers()`` order. Running statistics are part of the global model that FedAvg
  averages, so they travel with the weights;
- every parameter's ``.data`` and every such buffer is a view into ``flat``;
- ``grad`` (same length as ``flat``) holds all gradients: each trainable parameter's
  ``.grad`` is a view into it, and the buffer section stays zero.

So applying a mask, taking an update, zeroing or clipping gradients, loading global weights
or encoding a model are single vector operations, never a Python loop over layers.

What is *not* in ``flat``: integer buffers. ``num_batches_tracked`` of normalisation layers
is removed (set to ``None``): with an explicit ``momentum`` BatchNorm never reads it, and
keeping a per-rank counter outside the global model would make runs depend on which rank
trained which client. A normalisation layer with ``momentum=None`` (cumulative averaging,
which needs the counter) is therefore rejected. Non-persistent buffers and other integer
buffers are left in the module untouched.

Devices: build the FlatModel on the target device (``FlatModel(module, device="cuda:0")``)
or call `FlatModel.to`, which moves ``flat`` and ``grad`` and re-points every view. Never call
``module.to(device)`` on a flattened module: torch would give every parameter fresh storage
and silently break the aliasing (`FlatModel.is_aliased` detects it). Create optimisers after
the move; their state tensors live on the device of the parameters at their first step.

Gradients: autograd accumulates in place into an existing ``.grad``, so backward writes
straight into ``grad``. Where something replaces a ``.grad`` (``optimizer.zero_grad()``
sets it to ``None`` by default; ``create_graph=True`` builds new tensors), a hook run after
accumulation copies the new gradient into ``grad`` and re-attaches the view. Prefer
`FlatModel.zero_grad` (one ``zero_()`` call) on the hot path.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from torch import nn

__all__ = ["KINDS", "TensorInfo", "FlatModel"]

KINDS = ("conv_weight", "linear_weight", "bias", "norm_weight", "norm_bias", "buffer", "other")

_NORM_TYPES: tuple[type[nn.Module], ...] = (
    nn.modules.batchnorm._NormBase,  # BatchNorm*, InstanceNorm*, SyncBatchNorm
    nn.GroupNorm,
    nn.LayerNorm,
    nn.LocalResponseNorm,
) + ((nn.RMSNorm,) if hasattr(nn, "RMSNorm") else ())
_CONV_TYPES = (nn.modules.conv._ConvNd,)
_LINEAR_TYPES = (nn.Linear, nn.Bilinear)

# Attribute set on a flattened module, so that a second FlatModel built on the same module
# can switch off the first one's gradient hooks.
_HOOKS_ATTR = "_flat_grad_hook_handles"


@dataclass(frozen=True)
class TensorInfo:
    """Where one tensor of the model lives in the flat vector.

    Attributes
    ----------
    name : str
        The tensor's ``state_dict`` name, e.g. ``"features.0.weight"``.
    shape : tuple of int
        Its shape.
    offset : int
        Index of its first entry in the flat vector.
    numel : int
        Number of entries.
    kind : str
        One of `KINDS`: ``conv_weight``, ``linear_weight``, ``bias`` (of a conv or linear
        layer), ``norm_weight``, ``norm_bias``, ``buffer`` (running statistics) or ``other``.
    layer : int
        Index of the owning module among the modules that own tensors in the flat vector,
        in registration order (the order of ``named_modules()``). The zoo's networks
        register their modules in forward order, so the smallest ``layer`` of a conv/linear
        weight is the first layer and the largest the last.
    trainable : bool
        ``requires_grad`` of a parameter; ``False`` for buffers.
    """

    name: str
    shape: tuple[int, ...]
    offset: int
    numel: int
    kind: str
    layer: int
    trainable: bool

    @property
    def stop(self) -> int:
        """Index one past the tensor's last entry."""
        return self.offset + self.numel

    @property
    def slice(self) -> slice:
        """The tensor's entries in the flat vector as a ``slice``."""
        return slice(self.offset, self.offset + self.numel)


@dataclass
class _Slot:
    """A tensor's owner and local name, needed to re-point it after a move."""

    owner: nn.Module
    local_name: str
    param: nn.Parameter | None  # None for buffers


def _kind(owner: nn.Module, local_name: str, is_param: bool) -> str:
    if not is_param:
        return "buffer"
    if isinstance(owner, _CONV_TYPES):
        return {"weight": "conv_weight", "bias": "bias"}.get(local_name, "other")
    if isinstance(owner, _LINEAR_TYPES):
        return {"weight": "linear_weight", "bias": "bias"}.get(local_name, "other")
    if isinstance(owner, _NORM_TYPES):
        return {"weight": "norm_weight", "bias": "norm_bias"}.get(local_name, "other")
    return "other"


def _drop_batch_counters(module: nn.Module) -> None:
    """Remove ``num_batches_tracked`` from norm layers; reject ``momentum=None``."""
    for mod_name, mod in module.named_modules():
        if isinstance(mod, nn.modules.batchnorm._NormBase) and mod.track_running_stats:
            if mod.momentum is None:
                raise ValueError(
                    f"norm layer {mod_name!r} has momentum=None (cumulative average), which "
                    "needs the integer num_batches_tracked counter that the flat model "
                    "does not keep; give it an explicit momentum such as 0.1"
                )
            if mod._buffers.get("num_batches_tracked") is not None:
                mod._buffers["num_batches_tracked"] = None


class FlatModel:
    """An ``nn.Module`` whose parameters and float buffers are views into one 1-D tensor.

    Parameters
    ----------
    module : torch.nn.Module
        The network. It is modified in place (its tensors are re-pointed) and kept as
        ``self.module``; parameter objects stay the same, so optimisers built on
        ``module.parameters()`` before or after flattening both work.
    device : torch.device or str, optional
        Where ``flat`` and ``grad`` live. Default: the device of the module's first
        parameter (CPU for a module without parameters).

    Attributes
    ----------
    module : torch.nn.Module
        The wrapped network.
    flat : torch.Tensor
        1-D float32 tensor of length `numel`: parameters, then float buffers.
    grad : torch.Tensor
        1-D float32 tensor of the same length; trainable parameters' ``.grad`` views.
    layout : tuple of TensorInfo
        One entry per tensor, in flat order (offsets increase).
    numel : int
        Length of ``flat``.
    num_params : int
        Number of trainable entries.
    param_numel : int
        Number of entries that belong to parameters (trainable or not); buffers start here.
    """

    def __init__(self, module: nn.Module, *, device: torch.device | str | None = None) -> None:
        _drop_batch_counters(module)
        if device is None:
            first = next(module.parameters(), None)
            device = first.device if first is not None else torch.device("cpu")
        device = torch.device(device)

        # Parameters first, then buffers, each in registration order; a tensor shared by
        # two modules (tied weights) appears once, under its first name.
        found: list[tuple[nn.Module, str, str, torch.Tensor, nn.Parameter | None]] = []
        seen: set[int] = set()
        modules = list(module.named_modules())
        for mod_name, mod in modules:
            for local, p in mod._parameters.items():
                if p is not None and id(p) not in seen:
                    seen.add(id(p))
                    found.append((mod, mod_name, local, p, p))
        for mod_name, mod in modules:
            for local, b in mod._buffers.items():
                if b is None or id(b) in seen or local in mod._non_persistent_buffers_set:
                    continue
                if torch.is_floating_point(b):
                    seen.add(id(b))
                    found.append((mod, mod_name, local, b, None))
        # Layer = rank of the owner among owning modules, in registration order.
        owning = {id(f[0]) for f in found}
        layer_of = {}
        for _, mod in modules:
            if id(mod) in owning and id(mod) not in layer_of:
                layer_of[id(mod)] = len(layer_of)

        slots: list[_Slot] = []
        tensors: list[torch.Tensor] = []
        infos: list[TensorInfo] = []
        offset = 0
        for owner, mod_name, local, tensor, param in found:
            n = tensor.numel()
            infos.append(
                TensorInfo(
                    name=f"{mod_name}.{local}" if mod_name else local,
                    shape=tuple(tensor.shape),
                    offset=offset,
                    numel=n,
                    kind=_kind(owner, local, param is not None),
                    layer=layer_of[id(owner)],
                    trainable=bool(param is not None and param.requires_grad),
                )
            )
            slots.append(_Slot(owner, local, param))
            tensors.append(tensor)
            offset += n

        self.module = module
        self.layout: tuple[TensorInfo, ...] = tuple(infos)
        self._slots = slots
        self.numel = offset
        self.num_params = sum(i.numel for i in infos if i.trainable)
        self.param_numel = sum(i.numel for i in infos if i.kind != "buffer")
        self.flat = torch.empty(offset, dtype=torch.float32, device=device)
        self.grad = torch.zeros(offset, dtype=torch.float32, device=device)
        with torch.no_grad():
            for info, t in zip(self.layout, tensors, strict=True):
                self.flat[info.slice].copy_(t.detach().reshape(-1))
        self._trainable: torch.Tensor | None = None
        self._repoint()
        self._install_grad_hooks()

    # ----------------------------------------------------------------- views

    def _repoint(self) -> None:
        """Make every parameter, buffer and gradient a view into ``flat`` / ``grad``."""
        self._grad_views: list[torch.Tensor | None] = []
        for info, slot in zip(self.layout, self._slots, strict=True):
            view = self.flat[info.slice].view(info.shape)
            if slot.param is None:
                slot.owner._buffers[slot.local_name] = view
                self._grad_views.append(None)
                continue
            slot.param.data = view
            if info.trainable:
                gview = self.grad[info.slice].view(info.shape)
                slot.param.grad = gview
                self._grad_views.append(gview)
            else:
                slot.param.grad = None
                self._grad_views.append(None)

    def _install_grad_hooks(self) -> None:
        old = getattr(self.module, _HOOKS_ATTR, None)
        if old:
            for handle in old:
                handle.remove()
        handles = []
        for i, slot in enumerate(self._slots):
            if slot.param is not None and self.layout[i].trainable:
                handles.append(slot.param.register_post_accumulate_grad_hook(self._hook(i)))
        setattr(self.module, _HOOKS_ATTR, handles)

    def _hook(self, i: int):
        def keep_grad_in_flat(param: torch.Tensor) -> None:
            # Common case: autograd accumulated in place into our view; nothing to do.
            view = self._grad_views[i]
            if param.grad is view:
                return
            with torch.no_grad():
                view.copy_(param.grad)
            param.grad = view

        return keep_grad_in_flat

    def to(self, device: torch.device | str) -> FlatModel:
        """Move ``flat`` and ``grad`` to ``device`` and re-point every view; returns self.

        Optimisers built before the move keep references to the same parameter objects,
        but any state they already hold (momentum) stays on the old device: build them
        after moving.
        """
        device = torch.device(device)
        if device == self.flat.device:
            return self
        self.flat = self.flat.to(device)
        self.grad = self.grad.to(device)
        self._trainable = None
        self._repoint()
        return self

    @property
    def device(self) -> torch.device:
        """The device of ``flat``."""
        return self.flat.device

    def is_aliased(self) -> bool:
        """True when every parameter, float buffer and trainable gradient is still a view.

        Cheap enough for an assertion once per round; false after, e.g., ``module.to()``.
        """
        base = self.flat.data_ptr()
        gbase = self.grad.data_ptr()
        size = self.flat.element_size()
        for info, slot, gview in zip(self.layout, self._slots, self._grad_views, strict=True):
            tensor = slot.param if slot.param is not None else slot.owner._buffers[slot.local_name]
            if tensor is None or tensor.data_ptr() != base + info.offset * size:
                return False
            if tensor.device != self.flat.device:
                return False
            if gview is not None:
                g = slot.param.grad
                if g is not None and g.data_ptr() != gbase + info.offset * size:
                    return False
        return True

    # --------------------------------------------------------- conveniences

    @property
    def names(self) -> tuple[str, ...]:
        """``state_dict`` names of the tensors, in flat order."""
        return tuple(i.name for i in self.layout)

    @property
    def shapes(self) -> tuple[tuple[int, ...], ...]:
        """Shapes of the tensors, in flat order."""
        return tuple(i.shape for i in self.layout)

    def trainable_mask(self) -> torch.Tensor:
        """Bool vector over ``flat``: True at entries of trainable parameters (cached)."""
        if self._trainable is None:
            mask = torch.zeros(self.numel, dtype=torch.bool, device=self.flat.device)
            for info in self.layout:
                if info.trainable:
                    mask[info.slice] = True
            self._trainable = mask
        return self._trainable

    def view(self, name: str) -> torch.Tensor:
        """The tensor called ``name`` as a view into ``flat``."""
        for info in self.layout:
            if info.name == name:
                return self.flat[info.slice].view(info.shape)
        raise KeyError(name)

    def zero_grad(self) -> None:
        """Zero every gradient with one vector op, re-attaching any replaced ``.grad``."""
        self.grad.zero_()
        for slot, gview in zip(self._slots, self._grad_views, strict=True):
            if gview is not None and slot.param.grad is not gview:
                slot.param.grad = gview

    def load_(self, vector: torch.Tensor | np.ndarray | Any) -> None:
        """Copy ``vector`` into ``flat`` in place (no new parameter objects).

        Parameters
        ----------
        vector : torch.Tensor or numpy.ndarray
            1-D, length `numel`; any float dtype and device (converted while copying).
        """
        if isinstance(vector, np.ndarray):
            with warnings.catch_warnings():
                # Read-only arrays (h5py, MPI receive buffers) are only read here.
                warnings.simplefilter("ignore", UserWarning)
                vector = torch.from_numpy(np.ascontiguousarray(vector))
        elif not isinstance(vector, torch.Tensor):
            vector = torch.as_tensor(vector)
        if vector.dim() != 1 or vector.numel() != self.numel:
            raise ValueError(
                f"load_ expects a 1-D vector of length {self.numel}, got shape "
                f"{tuple(vector.shape)}"
            )
        with torch.no_grad():
            self.flat.copy_(vector)

    def __repr__(self) -> str:
        return (
            f"FlatModel({type(self.module).__name__}, tensors={len(self.layout)}, "
            f"numel={self.numel}, trainable={self.num_params}, device={self.flat.device})"
        )
