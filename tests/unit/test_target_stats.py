"""Partition statistics of regression targets: per-client distribution and its distance."""

from __future__ import annotations

import numpy as np
import pytest

from hpc_fedprune.data import as_labels, partition_stats
from hpc_fedprune.data.partition import describe_skew, target_stats


def test_target_distribution_per_client_by_hand():
    targets = np.array([1.0, 2.0, 3.0, 4.0, 10.0, 20.0])
    parts = [np.array([0, 1]), np.array([2, 3]), np.array([], dtype=np.int64)]
    s = target_stats(targets, parts)
    np.testing.assert_allclose(s["target_mean"][:2], [1.5, 3.5])
    np.testing.assert_allclose(s["target_std"][:2], [0.5, 0.5])
    np.testing.assert_allclose(s["target_min"][:2], [1.0, 3.0])
    np.testing.assert_allclose(s["target_max"][:2], [2.0, 4.0])
    assert np.isnan(s["target_mean"][2]) and np.isnan(s["target_w1"][2])
    # Pooled over the partitioned samples {1, 2, 3, 4} (4 and 5 belong to nobody). Client 0
    # holds {1, 2}: its CDF is above the pool's by 1/4 on [1, 2), 1/2 on [2, 3) and 1/4 on
    # [3, 4), so the Wasserstein-1 distance (the area between the CDFs) is 1; client 1
    # mirrors it.
    np.testing.assert_allclose(s["target_w1"][:2], [1.0, 1.0])
    assert float(s["target_w1_mean"]) == pytest.approx(1.0)


def test_same_distribution_has_zero_distance():
    targets = np.array([5.0, 7.0, 5.0, 7.0])
    s = target_stats(targets, [np.array([0, 1]), np.array([2, 3])])
    np.testing.assert_allclose(s["target_w1"], [0.0, 0.0])


def test_regression_partition_stats_carry_the_targets_and_say_so():
    targets = np.linspace(45.0, 80.0, 40)
    parts = [np.arange(0, 20), np.arange(20, 40)]  # young and old clients
    labels = as_labels(targets, bins=4)
    stats = partition_stats(labels, parts, 4, targets=targets)
    assert {"label_counts", "target_mean", "target_w1", "target_w1_mean"} <= set(stats)
    # W1 is the mean distance between matching quantiles: over the pool's k-th fortieth
    # (k = 1..40) the young half's quantile is floor(k/2) steps lower (steps of 35/39), so
    # W1 = sum(floor(k/2)) / 40 * 35/39 = 10 * 35/39; the old half mirrors it.
    assert float(stats["target_w1_mean"]) == pytest.approx(10 * 35 / 39, rel=1e-9)
    assert describe_skew(stats).startswith("target skew 8.97 (mean 1-D Wasserstein")
    assert "label" not in describe_skew(stats)
    plain = partition_stats(labels, parts, 4)
    assert "target_mean" not in plain
    assert describe_skew(plain).startswith("label skew 0.500")
