"""Cohort sampling and the rank schedule."""

import numpy as np

from hpc_fedprune.sim.cohort import sample_cohort, schedule_cohort


def test_cohort_is_a_keyed_sample_without_replacement():
    a = sample_cohort(seed=1, round_index=3, num_clients=100, cohort_size=10)
    assert len(np.unique(a)) == 10 and a.min() >= 0 and a.max() < 100
    assert np.array_equal(a, sample_cohort(1, 3, 100, 10))
    assert not np.array_equal(a, sample_cohort(1, 4, 100, 10))
    assert not np.array_equal(a, sample_cohort(2, 3, 100, 10))
    assert np.array_equal(sample_cohort(1, 1, 5, 5), np.arange(5))


def test_schedule_covers_the_cohort_once_and_balances_samples():
    sizes = np.array([500, 10, 10, 10, 300, 200, 100, 90, 80, 70])
    cohort = np.arange(10)
    for world_size in (1, 2, 3, 4, 10, 12):
        parts = schedule_cohort(cohort, sizes, world_size)
        assert len(parts) == world_size
        joined = np.sort(np.concatenate(parts))
        assert np.array_equal(joined, cohort)
        assert all(np.array_equal(p, np.sort(p)) for p in parts)
    loads = [sizes[p].sum() for p in schedule_cohort(cohort, sizes, 2)]
    assert max(loads) - min(loads) <= 10  # 1370 samples split 690/680 by LPT
