"""Merge operators as pure functions over flat vectors (FedSparsify section 3.3).

The round loop gives the server exact sums over the cohort; these functions turn them
into merged weights and masks. Inputs are float64 tensors of the flat model:

- ``mean_delta``   = sum_k p_k (w_k - w_g)         (p_k = n_k / sum n)
- ``kept_weight``  = sum_k p_k m_k w_k             (for the NNZ average)
- ``kept_share``   = sum_k p_k m_k                 (for the NNZ average)
- ``votes``        = sum_k m_k                     (for majority voting)
"""

from __future__ import annotations

import torch


def fedavg(weights: torch.Tensor, mean_delta: torch.Tensor) -> torch.Tensor:
    """Weighted average of all clients: ``w_g + sum_k p_k (w_k - w_g) = sum_k p_k w_k``."""
    return weights.double() + mean_delta


def nnz_average(kept_weight: torch.Tensor, kept_share: torch.Tensor) -> torch.Tensor:
    """Per position, the weighted average over the clients whose mask keeps it (0 if none)."""
    out = torch.zeros_like(kept_weight)
    held = kept_share > 0
    out[held] = kept_weight[held] / kept_share[held]
    return out


def majority_threshold(cohort_size: int, strict: bool = False) -> int:
    """Votes needed to keep a position.

    ``floor(N / 2)`` ("at least half", rounded down: the authors' code; for N = 3 a single
    vote, so a union), or with ``strict`` a strict majority, more than ``N / 2``
    (``floor(N / 2) + 1``).
    """
    return cohort_size // 2 + (1 if strict else 0)


def majority_keep(
    votes: torch.Tensor, cohort_size: int, prunable: torch.Tensor, strict: bool = False
) -> torch.Tensor:
    """Keep a prunable position iff enough clients kept it (`majority_threshold`); others
    always kept."""
    return (votes >= majority_threshold(cohort_size, strict)) | ~prunable
