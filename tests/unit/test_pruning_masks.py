"""Mask helpers: applying, counting, packing."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.errors import InputError
from hpc_fedprune.pruning import (
    apply_mask_,
    dense_mask,
    density,
    float_mask,
    kept_count,
    nonzero_mask,
    pack_mask,
    pruned_count,
    sparsity,
    unpack_mask,
)


def test_apply_mask_zeros_pruned_and_keeps_rest():
    gen = torch.Generator().manual_seed(0)
    flat = torch.randn(50, generator=gen)
    original = flat.clone()
    mask = torch.rand(50, generator=gen) > 0.5
    out = apply_mask_(flat, mask)
    assert out is flat
    assert torch.all(flat[~mask] == 0)
    assert torch.equal(flat[mask], original[mask])


def test_apply_mask_sees_in_place_mask_changes():
    mask = torch.ones(4, dtype=bool)
    apply_mask_(torch.ones(4), mask)  # caches the float copy
    mask[1] = False  # in-place change bumps the version: the cache must not be reused
    flat = torch.ones(4)
    apply_mask_(flat, mask)
    assert flat.tolist() == [1.0, 0.0, 1.0, 1.0]
    assert float_mask(mask) is float_mask(mask)
    with pytest.raises(ValueError):
        apply_mask_(torch.ones(3), mask)


def test_sparsity_density_over_prunable_only():
    prunable = torch.tensor([True, True, True, True, False])
    mask = torch.tensor([False, True, True, True, True])
    assert sparsity(mask, prunable) == 0.25
    assert density(mask, prunable) == 0.75
    assert sparsity(dense_mask(5), torch.zeros(5, dtype=bool)) == 0.0


def test_nonzero_mask():
    values = torch.tensor([0.0, 1.0, 0.0, -0.0])
    prunable = torch.tensor([True, True, False, True])
    assert nonzero_mask(values, prunable).tolist() == [False, True, True, False]


@pytest.mark.parametrize("n", [1, 7, 8, 9, 1001])
def test_pack_unpack_round_trip(n):
    mask = torch.from_numpy(np.random.default_rng(n).random(n) > 0.3)
    packed = pack_mask(mask)
    assert packed.dtype == np.uint8 and packed.size == (n + 7) // 8
    assert torch.equal(unpack_mask(packed, n), mask)
    assert torch.equal(unpack_mask(packed.tobytes(), n), mask)
    with pytest.raises(ValueError):
        unpack_mask(packed, n + 8)


def test_count_rule():
    assert pruned_count(100, 0.29) == 29  # 0.29 * 100 = 28.999999999999996 in floats
    assert pruned_count(10, 0.35) == 3
    # A density is a sparsity of 1 - d: 10 * 0.65 = 6.5 -> prune 6, keep 4 (= ceil(3.5)).
    assert kept_count(10, 0.35) == 10 - pruned_count(10, 0.65) == 4
    assert pruned_count(0, 0.5) == 0
    with pytest.raises(InputError):
        pruned_count(10, 1.01)
