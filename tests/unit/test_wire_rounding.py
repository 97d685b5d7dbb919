"""One wire rounding: the torch path (training, uploads, the server) decodes as numpy's does."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from hpc_fedprune.comm.wire import round_to_wire_, round_values


def special_and_random(n: int = 20000) -> np.ndarray:
    """Edge values (signed zeros, subnormals, overflow, ties) and values of every scale."""
    rng = np.random.default_rng(0)
    edges = np.array(
        [0.0, -0.0, 1.0, -1.0, 65504.0, 65520.0, 70000.0, -70000.0, 1e-8, -1e-8, 6e-8,
         np.float32(1.401298e-45), 3.4e38, -3.4e38, np.inf, -np.inf, 1 + 2**-11, 1 + 2**-8,
         1 + 3 * 2**-11, 1 + 2**-7 + 2**-8],
        dtype=np.float32,
    )  # fmt: skip
    scaled = rng.standard_normal(n).astype(np.float32) * np.float32(10.0) ** rng.integers(
        -40, 38, n
    ).astype(np.float32)
    raw = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
    values = np.concatenate([edges, scaled, raw])
    return values[~np.isnan(values)]  # NaN payloads: see the NaN test


@pytest.mark.parametrize("value_dtype", ["float32", "float16", "bfloat16"])
def test_torch_rounding_gives_the_bits_numpy_decodes(value_dtype):
    x = special_and_random()
    want = round_values(x, value_dtype)
    got = round_to_wire_(torch.from_numpy(x.copy()), value_dtype).numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))


@pytest.mark.parametrize("value_dtype", ["float32", "float16", "bfloat16"])
def test_zeros_become_plus_zero_and_nan_stays_nan(value_dtype):
    t = torch.tensor([-0.0, 0.0, float("nan"), -1e-30, 5.0])
    round_to_wire_(t, value_dtype)
    assert not torch.signbit(t[:2]).any()
    assert torch.isnan(t[2]) and t[4] == 5.0
    if value_dtype == "float16":  # below float16's smallest subnormal: +0.0, not -0.0
        assert t[3] == 0 and not bool(torch.signbit(t[3]))


def test_unknown_wire_type_is_refused():
    with pytest.raises(ValueError, match="value_dtype"):
        round_to_wire_(torch.zeros(2), "float8")
