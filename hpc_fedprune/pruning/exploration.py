"""AutoFLIP's guidance: exploration displacement to scores, scores to a mask (ALGORITHMS.md s4).

The arithmetic only; the exploration itself (training the explorers) is sim code
(`hpc_fedprune.exploration.phase`). Every function works on flat vectors over the whole model
and a layout (`hpc_fedprune.models.flat.TensorInfo` per tensor):

- `squared_displacement`: ``(theta_explored - theta_base)**2`` per parameter, float64;
- `normalise_per_tensor`: each tensor's prunable scores mapped on their own scale,
  ``minmax`` (``(g - min) / (max - min)``, so every tensor lies in [0, 1]) or ``robust``
  (``(g - median) / IQR``, the authors' RobustScaler option);
- `element_mask`: one global cut at the tau-quantile: exactly ``floor(tau * N)`` of the
  ``N`` prunable entries, the lowest-scoring ones, are removed (ties: lower flat index
  first; `hpc_fedprune.pruning.magnitude.lowest_k` selects in linear time, and works
  past the 16M elements ``torch.quantile`` refuses);
- `unit_mask`: the structured half of hybrid pruning: a unit (a row of a linear weight, a
  filter of a conv weight) scores the mean of its incoming weights' scores, and the
  ``floor(tau * U)`` lowest of the ``U`` units are removed whole, with their bias entries;
- `guidance_mask`: the two combined as the method uses them.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .magnitude import global_score_mask, lowest_k
from .masks import pruned_count

if TYPE_CHECKING:
    from ..models.flat import TensorInfo

__all__ = [
    "NORMALISATIONS",
    "element_mask",
    "guidance_mask",
    "normalise_per_tensor",
    "squared_displacement",
    "unit_mask",
]

NORMALISATIONS = ("minmax", "robust")
_UNIT_KINDS = ("conv_weight", "linear_weight")


def squared_displacement(explored: torch.Tensor, base: torch.Tensor) -> torch.Tensor:
    """How far each parameter travelled: ``(explored - base)**2`` in float64.

    Parameters
    ----------
    explored, base : torch.Tensor
        Flat weights after exploration and the reference they started from.

    Returns
    -------
    torch.Tensor
        float64 vector as long as the inputs.
    """
    diff = explored.double() - base.double()
    return diff * diff


def normalise_per_tensor(
    scores: torch.Tensor,
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    method: str = "minmax",
) -> torch.Tensor:
    """Scale each tensor's prunable scores on their own range (float64, zero elsewhere).

    Parameters
    ----------
    scores : torch.Tensor
        Raw scores over the flat model (mean squared displacement).
    layout : sequence of TensorInfo
        The flat model's layout.
    prunable : torch.Tensor
        Bool vector of the prunable set; only these entries are scaled and returned.
    method : {'minmax', 'robust'}
        ``minmax``: ``(g - min) / (max - min)``, into [0, 1]; a tensor whose entries are
        all equal maps to 0 (nothing in it moved more than anything else; the authors'
        code divides by zero there). ``robust``: ``(g - median) / IQR`` (the 25-75%
        interquartile range, linear interpolation); an IQR of 0 divides by 1.

    Returns
    -------
    torch.Tensor
        float64 vector, the normalised score at prunable entries and 0 elsewhere.
    """
    if method not in NORMALISATIONS:
        raise ValueError(f"unknown normalisation {method!r}; known: {', '.join(NORMALISATIONS)}")
    values = scores.double()
    out = torch.zeros_like(values)
    for info in layout:
        sel = prunable[info.slice]
        if not bool(sel.any()):
            continue
        g = values[info.slice][sel]
        if method == "minmax":
            lo, hi = g.min(), g.max()
            span = hi - lo
            scaled = (g - lo) / span if bool(span > 0) else torch.zeros_like(g)
        else:
            q = _quartiles(g)
            iqr = q[2] - q[0]
            scaled = (g - q[1]) / (iqr if bool(iqr > 0) else 1.0)
        seg = out[info.slice]
        seg[sel] = scaled
    return out


def _quartiles(g: torch.Tensor) -> torch.Tensor:
    """25%, 50% and 75% points with linear interpolation, by sorting (any length)."""
    s = torch.sort(g).values
    pos = torch.tensor([0.25, 0.5, 0.75], dtype=torch.float64, device=g.device) * (len(s) - 1)
    lo = pos.floor().long()
    hi = pos.ceil().long()
    frac = pos - lo.double()
    return s[lo] + (s[hi] - s[lo]) * frac


def element_mask(scores: torch.Tensor, prunable: torch.Tensor, tau: float) -> torch.Tensor:
    """Remove the ``floor(tau * N)`` lowest-scoring prunable entries (one global cut).

    Returns a bool mask over the flat model, True = kept, True outside ``prunable``.
    """
    return global_score_mask(scores, prunable, tau)


def _units(layout: Sequence[TensorInfo], prunable: torch.Tensor) -> list[tuple]:
    """(weight info, bias info or None) of every conv/linear layer that structured pruning
    may thin: its weight is wholly prunable and it is not the output layer (removing an
    output unit would remove a class)."""
    weights = [i for i in layout if i.kind in _UNIT_KINDS and len(i.shape) >= 2]
    if not weights:
        return []
    last = max(i.layer for i in weights)
    out = []
    for info in weights:
        if info.layer == last or not bool(prunable[info.slice].all()):
            continue
        bias = next((b for b in layout if b.kind == "bias" and b.layer == info.layer), None)
        if bias is not None and not bool(prunable[bias.slice].all()):
            bias = None
        out.append((info, bias))
    return out


def unit_mask(
    scores: torch.Tensor, layout: Sequence[TensorInfo], prunable: torch.Tensor, tau: float
) -> torch.Tensor:
    """Structured pruning: remove the ``floor(tau * U)`` units with the lowest mean score.

    A unit is an output neuron of a linear layer or an output filter of a conv layer
    (dimension 0 of its weight); its score is the mean of its incoming weights' scores.
    Units of all eligible layers are ranked together (ties: earlier layer, lower index
    first); a removed unit loses its whole weight slice and its bias entry. Eligible:
    conv/linear layers whose weight is wholly prunable, except the output layer.

    Returns
    -------
    torch.Tensor
        Bool mask over the flat model, True = kept.
    """
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    layers = _units(layout, prunable)
    if not layers:
        return keep
    means = [scores[w.slice].double().reshape(w.shape[0], -1).mean(dim=1) for w, _ in layers]
    drop = lowest_k(torch.cat(means), pruned_count(sum(len(m) for m in means), tau))
    start = 0
    for (w, b), m in zip(layers, means):
        gone = drop[start : start + len(m)]
        start += len(m)
        keep[w.slice].view(w.shape[0], -1)[gone] = False
        if b is not None:
            keep[b.slice][gone] = False
    return keep


def guidance_mask(
    scores: torch.Tensor,
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    tau: float,
    *,
    normalisation: str = "minmax",
    structured: bool = False,
) -> tuple[torch.Tensor, torch.Tensor]:
    """AutoFLIP's mask from raw displacement scores: normalise, cut, optionally hybrid.

    Parameters
    ----------
    scores : torch.Tensor
        Mean squared displacement over the flat model.
    layout, prunable
        The flat model's layout and prunable set.
    tau : float
        Fraction of the prunable set removed by the element cut.
    normalisation : {'minmax', 'robust'}
    structured : bool
        Hybrid: also remove whole units (`unit_mask`, same tau over units).

    Returns
    -------
    (mask, normalised)
        The bool mask (True = kept) and the normalised scores.
    """
    normalised = normalise_per_tensor(scores, layout, prunable, normalisation)
    mask = element_mask(normalised, prunable, tau)
    if structured:
        mask &= unit_mask(normalised, layout, prunable, tau)
    return mask, normalised
