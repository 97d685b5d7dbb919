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


def majority_threshold(cohort_size: int) -> int:
    """Votes needed to keep a position: ``floor(N / 2)`` ("at least half", rounded down)."""
    return cohort_size // 2


def majority_keep(votes: torch.Tensor, cohort_size: int, prunable: torch.Tensor) -> torch.Tensor:
    """Keep a prunable position iff at least ``floor(N/2)`` clients kept it; others always kept."""
    return (votes >= majority_threshold(cohort_size)) | ~prunable
