"""Merge operators of FedSparsify on small hand-made examples."""

import pytest
import torch

from hpc_fedprune.algorithms import merge


def weighted_sums(ws, ms, ns, w_global):
    """The sums the server receives, computed the long way."""
    total = sum(ns)
    p = [n / total for n in ns]
    delta = sum(pk * (w - w_global) for pk, w in zip(p, ws))
    kept_weight = sum(pk * m * w for pk, m, w in zip(p, ms, ws))
    kept_share = sum(pk * m for pk, m in zip(p, ms))
    votes = sum(ms)
    return delta, kept_weight, kept_share, votes


W = [
    torch.tensor([1.0, 2.0, 0.0, 4.0], dtype=torch.float64),
    torch.tensor([3.0, 0.0, 0.0, 8.0], dtype=torch.float64),
    torch.tensor([5.0, 6.0, 0.0, 0.0], dtype=torch.float64),
]
M = [
    torch.tensor([1.0, 1.0, 0.0, 1.0], dtype=torch.float64),
    torch.tensor([1.0, 0.0, 0.0, 1.0], dtype=torch.float64),
    torch.tensor([1.0, 1.0, 0.0, 0.0], dtype=torch.float64),
]
N = [1, 1, 2]
WG = torch.tensor([9.0, 9.0, 9.0, 9.0], dtype=torch.float64)


def test_fedavg_is_the_weighted_average_including_zeros():
    delta, *_ = weighted_sums(W, M, N, WG)
    # (1*1 + 1*3 + 2*5)/4 = 3.5 ; (2 + 0 + 12)/4 = 3.5 ; 0 ; (4 + 8 + 0)/4 = 3
    assert torch.allclose(
        merge.fedavg(WG, delta), torch.tensor([3.5, 3.5, 0.0, 3.0], dtype=torch.float64)
    )


def test_nnz_average_only_counts_clients_that_kept_the_position():
    _, kw, ks, _ = weighted_sums(W, M, N, WG)
    # pos1: clients 0 (w 2, n 1) and 2 (w 6, n 2) -> (2 + 12)/3; pos2 kept by none -> 0;
    # pos3: clients 0 and 1 -> (4 + 8)/2 = 6
    expected = torch.tensor([3.5, 14 / 3, 0.0, 6.0], dtype=torch.float64)
    assert torch.allclose(merge.nnz_average(kw, ks), expected)


@pytest.mark.parametrize(
    "cohort, needed", [(1, 0), (2, 1), (3, 1), (4, 2), (8, 4), (10, 5), (11, 5)]
)
def test_majority_threshold_is_at_least_half_rounded_down(cohort, needed):
    assert merge.majority_threshold(cohort) == needed


def test_majority_keep_at_odd_and_even_cohorts():
    prunable = torch.tensor([True, True, True, False])
    votes = torch.tensor([3.0, 2.0, 1.0, 0.0])
    # 3 clients: need 1 vote; position 3 is not prunable, so always kept
    assert majority_keep(votes, 3, prunable).tolist() == [True, True, True, True]
    # 4 clients: need 2 votes
    assert majority_keep(votes, 4, prunable).tolist() == [True, True, False, True]
    # 6 clients: need 3 votes
    assert majority_keep(votes, 6, prunable).tolist() == [True, False, False, True]


majority_keep = merge.majority_keep
