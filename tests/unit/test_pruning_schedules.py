"""Schedules at hand-computed rounds (docs/methods.md, Schedules, FedDIP, FedDST)."""

from __future__ import annotations

import pytest

from hpc_fedprune.errors import InputError
from hpc_fedprune.pruning import (
    Constant,
    Cubic,
    FedDIPLambda,
    Multiplicative,
    build_schedule,
    constant_sparsity,
    cosine_drop_fraction,
    cubic_sparsity,
    feddip_lambda,
    multiplicative_sparsity,
)


def test_cubic_fedsparsify_example():
    kw = dict(t0=1, s_i=0.0, s_f=0.9, t_end=200, freq=1)
    assert cubic_sparsity(1, **kw) == 0.0
    assert cubic_sparsity(2, **kw) == pytest.approx(0.9 * (1 - (198 / 199) ** 3))  # 0.013
    assert cubic_sparsity(50, **kw) == pytest.approx(0.9 - 0.9 * (150 / 199) ** 3)
    assert round(cubic_sparsity(50, **kw), 2) == 0.51
    assert round(cubic_sparsity(100, **kw), 2) == 0.79
    assert round(cubic_sparsity(150, **kw), 2) == 0.89
    assert cubic_sparsity(200, **kw) == 0.9
    assert cubic_sparsity(260, **kw) == 0.9


def test_cubic_frequency_quantises():
    sched = Cubic(t0=1, s_i=0.0, s_f=0.9, t_end=200, freq=10)
    assert sched(57) == sched(50) == cubic_sparsity(50, t0=1, s_i=0.0, s_f=0.9, t_end=200)
    assert sched(5) == 0.0  # quantised below t0: clamped, not negative
    assert sched(60) > sched(59)


def test_cubic_feddip_example():
    sched = Cubic(t0=0, s_i=0.5, s_f=0.95, t_end=1000)
    assert sched(0) == 0.5
    assert sched(250) == pytest.approx(0.760, abs=1e-3)
    assert sched(500) == pytest.approx(0.894, abs=1e-3)
    assert sched(750) == pytest.approx(0.943, abs=1e-3)
    assert sched(995) == pytest.approx(0.95, abs=1e-6)


def test_multiplicative():
    sched = Multiplicative(p=0.1, freq=2, t0=1)
    assert [sched.events(t) for t in (0, 1, 2, 3, 4, 9)] == [0, 0, 1, 1, 2, 4]
    assert sched(4) == pytest.approx(1 - 0.9**2)
    p = 1 - 0.05 ** (1 / 39)
    assert multiplicative_sparsity(39, p=p) == pytest.approx(0.95)
    assert multiplicative_sparsity(100, p=p, s_max=0.95) == 0.95


def test_constant():
    assert constant_sparsity(4, s=0.8, t0=5) == 0.0
    assert Constant(s=0.8, t0=5)(5) == 0.8


@pytest.mark.parametrize(
    "t, expected",
    [(0, 0.0), (49, 0.0), (50, 5e-4), (99, 5e-4), (100, 5e-4 + 5e-4 / 19), (950, 9.7368e-4)],
)
def test_feddip_staircase(t, expected):
    assert feddip_lambda(t, 1000, 1e-3) == pytest.approx(expected, rel=1e-4, abs=1e-12)


def test_feddip_staircase_remainder_and_short_runs():
    # T = 1010: segments of 50, the last absorbs the 10 extra rounds.
    assert feddip_lambda(1009, 1010, 1e-3) == feddip_lambda(950, 1010, 1e-3)
    short = FedDIPLambda(T=5, lambda_max=1e-3)
    values = [short(t) for t in range(5)]
    assert values[0] == 0.0 and values[1] == 5e-4
    assert values == sorted(values) and values[-1] < 1e-3
    assert FedDIPLambda(T=1, lambda_max=1e-3)(0) == 0.0
    assert short(7) == values[-1]


def test_cosine_drop():
    assert cosine_drop_fraction(0, alpha=0.5, t_end=100) == 0.5
    assert cosine_drop_fraction(50, alpha=0.5, t_end=100) == pytest.approx(0.25)
    assert cosine_drop_fraction(100, alpha=0.5, t_end=100) == pytest.approx(0.0)
    assert cosine_drop_fraction(150, alpha=0.5, t_end=100) == pytest.approx(0.0)


def test_validation_and_factory():
    with pytest.raises(InputError):
        Cubic(t0=5, s_i=0.0, s_f=0.9, t_end=5)
    with pytest.raises(InputError):
        Cubic(t0=0, s_i=0.0, s_f=1.2, t_end=5)
    with pytest.raises(InputError):
        Cubic(t0=0, s_i=0.0, s_f=0.9, t_end=5, freq=0)
    with pytest.raises(InputError):
        Multiplicative(p=-0.1)
    with pytest.raises(InputError):
        Cubic(t0=0, s_i=0.0, s_f=0.9, t_end=5)(-1)
    assert build_schedule("constant", s=0.3)(0) == 0.3
    with pytest.raises(InputError, match="known"):
        build_schedule("linear")
    with pytest.raises(InputError, match="cubic"):
        build_schedule("cubic", t0=1)
