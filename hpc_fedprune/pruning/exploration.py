"""AutoFLIP's guidance: exploration displacement to scores, scores to a mask (docs/methods.md).

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
  ``floor(tau * U)`` lowest of the ``U`` units are removed whole: incoming weights, bias,
  norm scale and shift, and the next layer's input columns (`hpc_fedprune.pruning.units`);
- `guidance_mask`: the two combined as the method uses them: units first, then the
  element cut among the entries the units left.

Re-cutting with the mask in force (``old``, AutoFLIP's refresh): among equal scores the
entries (and units) ``old`` already removes go first, so ties never bring a weight back
by its position.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import torch

from .magnitude import global_score_mask, lowest_k
from .masks import pruned_count
from .units import UnitLayer, removal_mask

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


def element_mask(
    scores: torch.Tensor,
    prunable: torch.Tensor,
    tau: float,
    *,
    candidates: torch.Tensor | None = None,
    prefer: torch.Tensor | None = None,
) -> torch.Tensor:
    """Remove the ``floor(tau * N)`` lowest-scoring of the ``N`` prunable entries (one cut).

    ``candidates`` (default: the prunable set) narrows where the cut may remove (hybrid:
    what the units left); ``prefer``: entries removed first among equal scores.

    Returns a bool mask over the flat model, True = kept, True outside the candidates.
    """
    count = pruned_count(int(prunable.sum()), tau)
    where = prunable if candidates is None else candidates
    return global_score_mask(scores, where, count=count, prefer=prefer)


def unit_mask(
    scores: torch.Tensor,
    layers: Sequence[UnitLayer],
    tau: float,
    *,
    old: torch.Tensor | None = None,
) -> torch.Tensor:
    """Structured pruning: remove the ``floor(tau * U)`` units with the lowest mean score.

    A unit is an output neuron of a linear layer or an output filter of a conv layer
    (dimension 0 of its weight); its score is the mean of its incoming weights' scores.
    Units of all ``layers`` are ranked together (ties: units ``old`` already removes,
    then earlier layer, lower index); a removed unit loses its incoming weights, bias,
    norm scale and shift and the next layer's input columns (`units.removal_mask`).

    Returns
    -------
    torch.Tensor
        Bool mask over the flat model, True = kept.
    """
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if not layers:
        return keep
    means = [scores[u.weight.slice].double().reshape(u.units, -1).mean(dim=1) for u in layers]
    prefer = None
    if old is not None:
        prefer = torch.cat([~old[u.weight.slice].view(u.units, -1).any(dim=1) for u in layers])
    drop = lowest_k(torch.cat(means), pruned_count(sum(u.units for u in layers), tau), None, prefer)
    start = 0
    for layer in layers:
        removal_mask(layer, drop[start : start + layer.units], keep)
        start += layer.units
    return keep


def removed_units(mask: torch.Tensor, layers: Sequence[UnitLayer]) -> tuple[int, int]:
    """Units that ``mask`` removes whole, and the parameters removed with them.

    A unit counts when its incoming weights, bias, norm entries and the next layer's
    input columns are all pruned (whatever cut pruned them); an entry shared by two
    removed units (a removed unit's input column in another removed unit's row) counts
    once.
    """
    units = 0
    cleared = torch.ones(mask.numel(), dtype=torch.bool, device=mask.device)
    for layer in layers:
        n = layer.units
        left = mask[layer.weight.slice].view(n, -1).any(dim=1)
        for info in (layer.bias, *layer.norm):
            if info is not None:
                left |= mask[info.slice]
        nxt = layer.next_weight
        left |= mask[nxt.slice].view(nxt.shape[0], n, -1).any(dim=2).any(dim=0)
        units += int((~left).sum())
        removal_mask(layer, ~left, cleared)
    return units, int((~cleared).sum())


def guidance_mask(
    scores: torch.Tensor,
    layout: Sequence[TensorInfo],
    prunable: torch.Tensor,
    tau: float,
    *,
    normalisation: str = "minmax",
    units: Sequence[UnitLayer] = (),
    old: torch.Tensor | None = None,
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
    units : sequence of UnitLayer
        Hybrid: the layers whose units may go (`unit_mask`, the same tau over units); the
        element cut then removes ``floor(tau * N)`` of the entries the units left.
    old : torch.Tensor, optional
        The mask in force when re-cutting: its removals go first among equal scores.

    Returns
    -------
    (mask, normalised)
        The bool mask (True = kept) and the normalised scores.
    """
    normalised = normalise_per_tensor(scores, layout, prunable, normalisation)
    prefer = None if old is None else ~old
    if not units:
        return element_mask(normalised, prunable, tau, prefer=prefer), normalised
    keep = unit_mask(normalised, units, tau, old=old)
    mask = keep & element_mask(normalised, prunable, tau, candidates=prunable & keep, prefer=prefer)
    return mask, normalised
