"""Partitioners: each test fails if the rule it names is broken."""

from __future__ import annotations

import importlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hpc_fedprune.data import (
    as_labels,
    partition,
    partition_options,
    partition_schemes,
    partition_stats,
    split_local_test,
)
from hpc_fedprune.errors import InputError

# The package exports the function ``partition``, which hides the module of that name.
partition_module = importlib.import_module("hpc_fedprune.data.partition")

SCHEMES = ["iid", "iid_balanced", "dirichlet", "shards", "quantity_skew"]
LABELS = np.random.default_rng(7).integers(0, 10, 3000)

fast = settings(max_examples=40, deadline=None)


def assert_disjoint_sorted(parts, n):
    everything = np.concatenate(parts)
    assert len(np.unique(everything)) == len(everything), "a sample went to two clients"
    assert everything.min() >= 0 and everything.max() < n
    for p in parts:
        assert p.dtype == np.int64 and np.all(np.diff(p) > 0)


@pytest.mark.parametrize("scheme", SCHEMES)
def test_every_scheme_uses_each_sample_once(scheme):
    parts = partition(LABELS, 20, scheme, seed=0)
    assert len(parts) == 20
    assert_disjoint_sorted(parts, len(LABELS))
    assert sum(len(p) for p in parts) == len(LABELS)  # balanced classes: nothing left over


@pytest.mark.parametrize("scheme", SCHEMES)
def test_same_seed_same_split_other_seed_other_split(scheme):
    a, b, c = (partition(LABELS, 12, scheme, seed=s) for s in (5, 5, 6))
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


@fast
@given(
    n=st.integers(30, 300),
    classes=st.integers(1, 6),
    k=st.integers(1, 12),
    scheme=st.sampled_from(["iid", "iid_balanced", "dirichlet", "quantity_skew"]),
    seed=st.integers(0, 2**31),
)
def test_any_labels_any_clients_partition_everything(n, classes, k, scheme, seed):
    labels = np.random.default_rng(seed).integers(0, classes, n)
    options = {"min_size": 0} if scheme == "dirichlet" else {"power": 0.5}
    options = options if scheme in ("dirichlet", "quantity_skew") else {}
    parts = partition(labels, k, scheme, seed=seed, **options)
    assert len(parts) == k
    assert_disjoint_sorted(parts, n)
    assert sum(len(p) for p in parts) == n


def test_iid_sizes_differ_by_at_most_one():
    sizes = [len(p) for p in partition(LABELS, 7, "iid", seed=0)]
    assert max(sizes) - min(sizes) <= 1


@fast
@given(k=st.integers(1, 15), seed=st.integers(0, 2**31), skew=st.floats(0.0, 3.0))
def test_iid_balanced_gives_every_client_the_same_class_shares(k, seed, skew):
    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.exponential(1 + skew, 400).astype(int), 5)  # unequal classes
    parts = partition(labels, k, "iid_balanced", seed=seed)
    counts = partition_stats(labels, parts, 6)["label_counts"]
    assert np.all(counts.max(0) - counts.min(0) <= 1)
    sizes = counts.sum(1)
    assert sizes.max() - sizes.min() <= 1 and sizes.sum() == 400


def test_dirichlet_alpha_controls_label_skew():
    small = partition_stats(LABELS, partition(LABELS, 10, "dirichlet", seed=0, alpha=0.05), 10)
    large = partition_stats(LABELS, partition(LABELS, 10, "dirichlet", seed=0, alpha=1000), 10)
    assert small["label_tv_mean"] > 0.5  # clients dominated by few labels
    assert large["label_tv_mean"] < 0.06  # close to the pooled mix (sampling noise only)
    assert np.median(small["classes_per_client"]) < np.median(large["classes_per_client"]) == 10


def test_dirichlet_min_size_is_honoured():
    draw = partition(LABELS, 15, "dirichlet", seed=1, alpha=0.1, min_size=0)
    assert min(len(p) for p in draw) < 10  # so the rule below has work to do
    for min_size in (50, 80):
        parts = partition(LABELS, 15, "dirichlet", seed=1, alpha=0.1, min_size=min_size)
        assert min(len(p) for p in parts) >= min_size


def test_dirichlet_impossible_min_size_is_an_input_error(monkeypatch):
    with pytest.raises(InputError, match="exceeds"):
        partition(LABELS, 10, "dirichlet", seed=0, min_size=301)
    monkeypatch.setattr(partition_module, "MAX_TRIES", 20)
    with pytest.raises(InputError, match="no draw in 20 .* raise alpha"):
        partition(LABELS[:200], 10, "dirichlet", seed=0, alpha=0.001, min_size=20)
    with pytest.raises(InputError, match="alpha"):
        partition(LABELS, 10, "dirichlet", seed=0, alpha=0.0)


@fast
@given(
    k=st.integers(1, 30),
    classes=st.integers(1, 8),
    c=st.integers(1, 8),
    seed=st.integers(0, 2**31),
)
def test_shards_give_each_client_exactly_c_labels(k, classes, c, seed):
    rng = np.random.default_rng(seed)
    labels = np.minimum(rng.exponential(classes / 2, 600).astype(int), classes - 1)  # unequal
    present = len(np.unique(labels))
    if c > present:
        with pytest.raises(InputError, match="classes_per_client"):
            partition(labels, k, "shards", seed=seed, classes_per_client=c)
        return
    parts = partition(labels, k, "shards", seed=seed, classes_per_client=c)
    stats = partition_stats(labels, parts, classes)
    assert np.all(stats["classes_per_client"] == c)
    assert_disjoint_sorted(parts, len(labels))
    if present <= k * c:
        assert stats["num_samples"] == len(labels)  # every class got a shard: all used


def test_shards_pair_classes_at_random():
    parts = partition(LABELS, 100, "shards", seed=0, classes_per_client=2)
    pairs = {tuple(np.unique(LABELS[p])) for p in parts}
    assert len(pairs) > 15  # a fixed stride would give only 5 distinct pairs


def test_shards_errors():
    with pytest.raises(InputError, match="exceeds the 10 classes"):
        partition(LABELS, 5, "shards", seed=0, classes_per_client=11)
    with pytest.raises(InputError, match="single-class shards"):
        partition(np.array([0] * 5 + [1] * 5), 8, "shards", seed=0, classes_per_client=2)


BRAIN_AGE_SIZES = [2401, 1765, 1303, 964, 714, 528, 391, 290]


@pytest.mark.parametrize("n", [8357, 1000, 97])
def test_quantity_skew_follows_explicit_sizes(n):
    labels = np.zeros(n, dtype=np.int64)
    parts = partition(labels, 8, "quantity_skew", seed=0, sizes=BRAIN_AGE_SIZES)
    exact = n * np.array(BRAIN_AGE_SIZES) / sum(BRAIN_AGE_SIZES)
    sizes = np.array([len(p) for p in parts])
    assert np.all(np.abs(sizes - exact) < 1) and sizes.sum() == n


@pytest.mark.parametrize("power", [0.0, 1.0, 2.0])
def test_quantity_skew_power_law_sizes(power):
    parts = partition(LABELS, 6, "quantity_skew", seed=0, power=power)
    sizes = np.array([len(p) for p in parts])
    weights = np.arange(1, 7) ** -power
    assert np.all(np.abs(sizes - len(LABELS) * weights / weights.sum()) < 1)


def test_quantity_skew_keeps_labels_iid_within_clients():
    stats = partition_stats(LABELS, partition(LABELS, 5, "quantity_skew", seed=0), 10)
    assert stats["label_tv"].max() < 0.1 and stats["size_cv"] > 0.5


def test_quantity_skew_errors():
    with pytest.raises(InputError, match="sizes"):
        partition(LABELS, 4, "quantity_skew", seed=0, sizes=[1, 2, 3])
    with pytest.raises(InputError, match="no samples"):
        partition(LABELS[:10], 8, "quantity_skew", seed=0, power=3.0)


def test_regression_targets_are_binned_into_quantiles():
    ages = np.random.default_rng(0).uniform(45, 80, 1000).astype(np.float32)
    labels = as_labels(ages, bins=5)
    assert np.array_equal(np.bincount(labels), [200] * 5)
    assert np.all(np.diff([ages[labels == b].max() for b in range(5)]) > 0)  # ordered by age


def test_label_skew_on_regression_targets_is_age_range_skew():
    ages = np.random.default_rng(0).uniform(45, 80, 2000).astype(np.float32)
    skewed = partition(ages, 8, "shards", seed=0, classes_per_client=1, bins=8)
    mixed = partition(ages, 8, "iid", seed=0)
    assert np.std([ages[p].mean() for p in skewed]) > 5 * np.std([ages[p].mean() for p in mixed])


def test_bad_inputs_are_input_errors():
    with pytest.raises(InputError, match="3 clients but only 2 samples"):
        partition(np.array([0, 1]), 3, "iid", seed=0)
    with pytest.raises(InputError, match=r"unknown partition scheme 'noniid' \(valid: iid, "):
        partition(LABELS, 3, "noniid", seed=0)
    with pytest.raises(InputError, match="no option 'alpha'"):
        partition(LABELS, 3, "shards", seed=0, alpha=0.5)
    with pytest.raises(InputError, match="NaN"):
        partition(np.array([1.0, np.nan]), 1, "iid", seed=0)
    with pytest.raises(InputError, match=">= 0"):
        partition(np.array([0, -1]), 1, "iid", seed=0)
    with pytest.raises(InputError, match="num_clients"):
        partition(LABELS, 0, "iid", seed=0)
    assert set(partition_schemes()) == set(SCHEMES)
    assert partition_options("dirichlet") == ("alpha", "min_size")


def test_local_test_split_is_a_per_client_disjoint_split():
    parts = partition(LABELS, 6, "dirichlet", seed=0, min_size=1)
    train, test = split_local_test(parts, 0.25, seed=3)
    for p, a, b in zip(parts, train, test, strict=True):
        assert np.array_equal(np.sort(np.concatenate([a, b])), p)
        assert len(np.intersect1d(a, b)) == 0 and np.all(np.diff(b) > 0)
        assert abs(len(b) - 0.25 * len(p)) <= 0.5
    again = split_local_test(parts, 0.25, seed=3)[1]
    assert all(np.array_equal(x, y) for x, y in zip(test, again, strict=True))
    # Client 1's split depends only on its own samples, not on client 0's.
    changed = [parts[0][:3], *parts[1:]]
    assert np.array_equal(split_local_test(changed, 0.25, seed=3)[1][1], test[1])


def test_local_test_split_keeps_a_training_sample_and_checks_fraction():
    train, test = split_local_test([np.array([4]), np.array([1, 2])], 0.9, seed=0)
    assert [len(t) for t in train] == [1, 1] and [len(t) for t in test] == [0, 1]
    with pytest.raises(InputError, match="fraction"):
        split_local_test([np.array([1])], 1.0, seed=0)


def test_partition_stats_on_a_hand_example():
    labels = np.array([0, 0, 1, 1, 2, 2])
    stats = partition_stats(labels, [np.array([0, 1]), np.array([2, 4, 5]), np.array([], int)], 3)
    assert stats["sizes"].tolist() == [2, 3, 0]
    assert stats["label_counts"].tolist() == [[2, 0, 0], [0, 1, 2], [0, 0, 0]]
    assert stats["classes_per_client"].tolist() == [1, 2, 0]
    # Pooled mix over the 5 partitioned samples: (2, 1, 2) / 5.
    np.testing.assert_allclose(stats["label_tv"][:2], [0.6, 0.4])
    assert np.isnan(stats["label_tv"][2])
    assert stats["num_samples"] == 5 and stats["label_tv_mean"] == pytest.approx(0.5)
