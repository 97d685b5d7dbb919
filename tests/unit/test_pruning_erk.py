"""ERK allocation and random masks: formula, redistribution, exact counts, determinism."""

from __future__ import annotations

import math

import pytest
import torch

from hpc_fedprune.errors import InputError
from hpc_fedprune.models import FlatModel, TensorInfo, build_model
from hpc_fedprune.pruning import (
    erk_counts,
    erk_densities,
    erk_random_mask,
    kept_count,
    prunable_mask,
    random_mask,
)
from hpc_fedprune.rng import Stream, numpy_rng


def _lenet():
    fm = FlatModel(build_model("lenet5", (1, 28, 28), 10, seed=0))
    return fm.layout, prunable_mask(fm.layout, "conv_linear_weights")


def _raw(info: TensorInfo) -> float:
    return sum(info.shape) / math.prod(info.shape)


@pytest.mark.parametrize("density", [0.05, 0.1, 0.5])
def test_densities_follow_formula_and_meet_target(density):
    layout, prunable = _lenet()
    dens = erk_densities(layout, prunable, density)
    infos = {i.name: i for i in layout}
    total = sum(infos[n].numel for n in dens)
    assert math.isclose(sum(d * infos[n].numel for n, d in dens.items()), density * total)
    sparse = [n for n, d in dens.items() if d < 1.0]
    eps = {dens[n] / _raw(infos[n]) for n in sparse}
    assert max(eps) - min(eps) < 1e-12 * max(eps)  # one eps for every non-dense tensor
    for n, d in dens.items():
        if d == 1.0:  # dense ones are those whose ERK density would exceed 1
            assert min(eps) * _raw(infos[n]) > 1.0


def test_dense_redistribution():
    # A 2x2 tensor scores (2+2)/4 = 1, a 100x100 one 0.02: at density 0.5 the small one
    # would get eps * 1 > 1, so it is dense and the big one takes the remaining budget.
    layout = (
        TensorInfo("small", (2, 2), 0, 4, "linear_weight", 0, True),
        TensorInfo("big", (100, 100), 4, 10000, "linear_weight", 1, True),
    )
    prunable = torch.ones(10004, dtype=bool)
    dens = erk_densities(layout, prunable, 0.5)
    assert dens["small"] == 1.0
    assert math.isclose(dens["big"], (0.5 * 10004 - 4) / 10000)
    counts = erk_counts(layout, prunable, 0.5)
    assert counts == {"small": 4, "big": 5002 - 4}
    assert erk_densities(layout, prunable, 1.0) == {"small": 1.0, "big": 1.0}
    assert erk_counts(layout, prunable, 0.0) == {"small": 0, "big": 0}


@pytest.mark.parametrize("density", [0.013, 0.1, 0.37, 0.9])
def test_counts_exact_and_within_one_weight(density):
    layout, prunable = _lenet()
    counts = erk_counts(layout, prunable, density)
    n = int(prunable.sum())
    assert sum(counts.values()) == kept_count(n, density)
    assert abs(sum(counts.values()) - density * n) < 1
    dens = erk_densities(layout, prunable, density)
    sizes = {i.name: i.numel for i in layout}
    for name, c in counts.items():
        assert 0 <= c <= sizes[name]
        assert abs(c - dens[name] * sizes[name]) < 1  # rounding moves each by < 1


def test_power_scale_zero_is_uniform():
    layout, prunable = _lenet()
    dens = erk_densities(layout, prunable, 0.2, power_scale=0.0)
    assert all(math.isclose(d, 0.2) for d in dens.values())


def test_erk_random_mask_counts_and_determinism():
    layout, prunable = _lenet()
    counts = erk_counts(layout, prunable, 0.1)
    mask = erk_random_mask(layout, prunable, 0.1, numpy_rng(5, Stream.MASK, 0, 1))
    for info in layout:
        if info.name in counts:
            assert int(mask[info.slice].sum()) == counts[info.name]
        else:
            assert mask[info.slice].all()
    again = erk_random_mask(layout, prunable, 0.1, numpy_rng(5, Stream.MASK, 0, 1))
    other = erk_random_mask(layout, prunable, 0.1, numpy_rng(5, Stream.MASK, 0, 2))
    assert torch.equal(mask, again) and not torch.equal(mask, other)


def test_random_mask_exact_count():
    prunable = torch.zeros(1000, dtype=bool)
    prunable[100:900] = True
    mask = random_mask(prunable, 0.755, numpy_rng(1, Stream.MASK))
    assert int((~mask).sum()) == math.floor(0.755 * 800)
    assert mask[:100].all() and mask[900:].all()
    assert torch.equal(mask, random_mask(prunable, 0.755, numpy_rng(1, Stream.MASK)))
    with pytest.raises(InputError):
        random_mask(prunable, -0.1, numpy_rng(1, Stream.MASK))
