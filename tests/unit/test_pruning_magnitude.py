"""Magnitude masks: exact counts, deterministic ties, nesting, global vs layer-wise."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_fedprune.errors import InputError
from hpc_fedprune.models import TensorInfo
from hpc_fedprune.pruning import (
    global_magnitude_mask,
    global_score_mask,
    layerwise_magnitude_mask,
    lowest_k,
    pruned_count,
)


def _reference(values: np.ndarray, prunable: np.ndarray, s: float) -> np.ndarray:
    """Brute force: stable sort of |w| over prunable entries, prune the first floor(s*N)."""
    idx = np.flatnonzero(prunable)
    order = idx[np.argsort(np.abs(values[idx]), kind="stable")]
    mask = np.ones(values.size, dtype=bool)
    mask[order[: pruned_count(idx.size, s)]] = False
    return mask


@settings(max_examples=60, deadline=None)
@given(
    values=st.lists(st.integers(-3, 3), min_size=1, max_size=40),
    prunable_bits=st.lists(st.booleans(), min_size=40, max_size=40),
    s=st.floats(0, 1),
)
def test_matches_stable_sort_reference_with_ties(values, prunable_bits, s):
    v = np.array(values, dtype=np.float32) / 2  # few distinct magnitudes: many ties
    p = np.array(prunable_bits[: v.size])
    got = global_magnitude_mask(torch.from_numpy(v), torch.from_numpy(p), s)
    assert np.array_equal(got.numpy(), _reference(v, p, s))
    assert int((~got).sum()) == pruned_count(int(p.sum()), s)


@pytest.mark.parametrize("n, s, k", [(100, 0.29, 29), (10, 0.9, 9), (7, 0.5, 3), (3, 1.0, 3)])
def test_count_rule_is_floor(n, s, k):
    assert pruned_count(n, s) == k
    mask = global_magnitude_mask(torch.arange(n, dtype=torch.float32), torch.ones(n, dtype=bool), s)
    assert int((~mask).sum()) == k


def test_ties_prune_lower_index_first_and_sign_ignored():
    values = torch.tensor([1.0, -1.0, 1.0, -5.0, 0.5, 1.0])
    mask = global_magnitude_mask(values, torch.ones(6, dtype=bool), 0.5)
    # 0.5 goes first, then the two lowest-index entries of magnitude 1; -5 stays.
    assert mask.tolist() == [False, False, True, True, False, True]
    assert torch.equal(mask, global_magnitude_mask(values, torch.ones(6, dtype=bool), 0.5))


def test_outside_prunable_always_kept():
    values = torch.tensor([0.0, 0.0, 3.0, 4.0])
    prunable = torch.tensor([False, False, True, True])
    mask = global_magnitude_mask(values, prunable, 1.0)
    assert mask.tolist() == [True, True, False, False]


def test_current_mask_gives_nested_masks():
    gen = torch.Generator().manual_seed(0)
    values = torch.randn(1000, generator=gen)
    prunable = torch.ones(1000, dtype=bool)
    old = global_magnitude_mask(torch.randn(1000, generator=gen), prunable, 0.5)
    new = global_magnitude_mask(values, prunable, 0.7, current_mask=old)
    assert int((~new).sum()) == 700
    assert not (new & ~old).any()  # nothing regrows
    # Lower sparsity: exactly the count, the pruned set is a subset of the old one.
    back = global_magnitude_mask(values, prunable, 0.3, current_mask=old)
    assert int((~back).sum()) == 300 and not (~back & old).any()


def test_score_mask_and_lowest_k():
    scores = torch.tensor([3.0, -1.0, 2.0, -1.0])
    assert lowest_k(scores, 2).tolist() == [False, True, False, True]
    assert lowest_k(scores, 0).sum() == 0 and lowest_k(scores, 9).all()
    mask = global_score_mask(scores, torch.ones(4, dtype=bool), 0.25)
    assert mask.tolist() == [True, False, True, True]  # signed scores, not magnitudes
    with pytest.raises(ValueError, match="NaN"):
        lowest_k(torch.tensor([1.0, float("nan")]), 1)


def test_bad_sparsity_is_input_error():
    with pytest.raises(InputError):
        global_magnitude_mask(torch.ones(3), torch.ones(3, dtype=bool), 1.5)


def _two_layers() -> tuple[tuple[TensorInfo, ...], torch.Tensor]:
    layout = (
        TensorInfo("a.weight", (10,), 0, 10, "linear_weight", 0, True),
        TensorInfo("b.weight", (30,), 10, 30, "linear_weight", 1, True),
        TensorInfo("b.bias", (2,), 40, 2, "bias", 1, True),
    )
    # Layer a is tiny in magnitude, layer b large; the bias is not prunable.
    values = torch.cat([torch.linspace(0.01, 0.1, 10), torch.linspace(1, 3, 30), torch.zeros(2)])
    return layout, values


def test_global_vs_layerwise():
    layout, values = _two_layers()
    prunable = torch.ones(42, dtype=bool)
    prunable[40:] = False
    glob = global_magnitude_mask(values, prunable, 0.25)
    assert not glob[:10].any() and glob[10:40].all()  # global takes all of the small layer
    lw = layerwise_magnitude_mask(values, layout, prunable, 0.25)
    assert int((~lw[:10]).sum()) == 2 and int((~lw[10:40]).sum()) == 7  # floor per tensor
    assert lw[40:].all()
    per = layerwise_magnitude_mask(values, layout, prunable, {"a.weight": 0.0, "b.weight": 0.5})
    assert per[:10].all() and int((~per[10:40]).sum()) == 15
    kept = layerwise_magnitude_mask(values, layout, prunable, keep={"a.weight": 1, "b.weight": 29})
    assert kept[:10].tolist() == [False] * 9 + [True] and int(kept[10:40].sum()) == 29
    with pytest.raises(InputError, match="exactly one"):
        layerwise_magnitude_mask(values, layout, prunable)
    with pytest.raises(InputError, match="b.weight"):
        layerwise_magnitude_mask(values, layout, prunable, keep={"a.weight": 1})


def test_past_16m_elements():
    n = 2**24 + 5
    values = torch.arange(n, dtype=torch.float32).remainder_(1000)  # heavy ties
    prunable = torch.ones(n, dtype=bool)
    mask = global_magnitude_mask(values, prunable, 0.9)
    assert int((~mask).sum()) == math.floor(0.9 * n)


@pytest.mark.parametrize("order", ["random", "ascending", "descending", "constant"])
def test_kth_smallest_matches_a_full_sort_on_any_order(order):
    from hpc_fedprune.pruning.magnitude import kth_smallest

    gen = torch.Generator().manual_seed(5)
    values = torch.rand(20_000, generator=gen)
    if order == "ascending":
        values = values.sort().values
    elif order == "descending":  # the order that makes a plain quickselect quadratic
        values = values.sort(descending=True).values
    elif order == "constant":
        values = torch.full((20_000,), 0.25)
    for k in (1, 2_000, 10_000, 20_000):
        assert float(kth_smallest(values, k)) == float(values.sort().values[k - 1])
    halves = values.to(torch.bfloat16)
    assert float(kth_smallest(halves, 7)) == float(halves.float().sort().values[6])
