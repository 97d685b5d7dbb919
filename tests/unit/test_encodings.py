"""Encodings of sparse vectors and masks: exact round trips, exact sizes, smallest choice."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from hpc_fedprune.comm import bitpack, encodings
from hpc_fedprune.comm.wire import round_values

VALUE_BYTES = {"float32": 4, "float16": 2, "bfloat16": 2}
SPECIFIC = ("dense", "coo", "delta", "bitmap")


def bits(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=np.float32).view(np.uint32)


def sparse_vector(n: int, nnz: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    x = np.zeros(n, dtype=np.float32)
    x[rng.choice(n, nnz, replace=False)] = rng.standard_normal(nnz).astype(np.float32) + 3
    return x


def expected_size(method: str, n: int, m: int, v: int, k: int = 0) -> int:
    """The documented size formulas, written out independently of the module."""
    header = 16
    if method == "dense":
        return header + n * v
    if method == "values":
        return header + k * v
    if method == "coo":
        return header + m * v + 4 * m
    if method == "bitmap":
        return header + m * v + math.ceil(n / 8)
    if method == "delta":
        if m == 0:
            return header
        low = int(math.floor(math.log2(n / m))) if n >= m else 0
        return header + m * v + math.ceil(m * low / 8) + math.ceil((m + ((n - 1) >> low)) / 8)
    raise AssertionError(method)


CASES = [(1, 0), (1, 1), (2, 1), (7, 3), (8, 8), (9, 1), (1000, 0), (1000, 1), (1000, 10),
         (1000, 300), (1000, 1000), (4099, 41)]  # fmt: skip


@pytest.mark.parametrize("n,nnz", CASES)
@pytest.mark.parametrize("value_dtype", ["float32", "float16", "bfloat16"])
def test_round_trip_and_exact_size_every_method(n, nnz, value_dtype):
    x = sparse_vector(n, nnz, seed=n + nnz)
    want = round_values(x, value_dtype)
    m = int(np.count_nonzero(want))
    v = VALUE_BYTES[value_dtype]
    for method in SPECIFIC:
        buf = encodings.encode(x, value_dtype=value_dtype, method=method)
        assert buf.dtype == np.uint8
        assert len(buf) == expected_size(method, n, m, v), method
        info = encodings.describe(buf)
        assert info.method == method and info.total_bytes == len(buf)
        assert info.header_bytes == 16 and info.value_bytes == info.count * v
        assert encodings.plan(x, value_dtype=value_dtype, method=method).total_bytes == len(buf)
        np.testing.assert_array_equal(bits(encodings.decode(buf, n=n)), bits(want))


@pytest.mark.parametrize("n,nnz", CASES)
def test_auto_is_smallest(n, nnz):
    x = sparse_vector(n, nnz)
    info = encodings.plan(x)
    sizes = {m: len(encodings.encode(x, method=m)) for m in SPECIFIC}
    assert info.candidates == sizes
    buf = encodings.encode(x)
    assert len(buf) == min(sizes.values()) == info.total_bytes
    assert encodings.describe(buf).method == info.method


@pytest.mark.parametrize("n,nnz", CASES)
@pytest.mark.parametrize("value_dtype", ["float32", "bfloat16"])
def test_plan_from_counts_equals_plan(n, nnz, value_dtype):
    x = sparse_vector(n, nnz)
    mask = x != 0
    mask[: n // 3] = True
    for shared in (None, mask):
        full = encodings.plan(x, shared_mask=shared, value_dtype=value_dtype)
        k = None if shared is None else int(shared.sum())
        fast = encodings.plan_from_counts(n, nnz, value_dtype=value_dtype, shared_k=k)
        assert fast == full


def test_float32_is_bit_exact_for_special_values():
    x = np.array([0, 1e-45, -1e-45, np.inf, -np.inf, np.nan, 3.4028235e38, -7.0], np.float32)
    for method in SPECIFIC:
        out = encodings.decode(encodings.encode(x, method=method), n=x.size)
        np.testing.assert_array_equal(bits(out), bits(x))


def test_negative_zero_is_canonical_plus_zero():
    # w * mask gives -0.0 at pruned negative weights: it must not count as a non-zero.
    w = np.array([-1.5, 2.0, -3.0, 4.0], np.float32)
    mask = np.array([False, True, False, True])
    x = w * mask
    assert np.signbit(x[0])
    info = encodings.plan(x, shared_mask=mask)
    assert info.method == "values" and info.count == 2
    out = encodings.decode(encodings.encode(x, shared_mask=mask), n=4, shared_mask=mask)
    np.testing.assert_array_equal(bits(out), bits([0.0, 2.0, 0.0, 4.0]))
    np.testing.assert_array_equal(bits(round_values(x)), bits([0.0, 2.0, 0.0, 4.0]))


def reference_round(value: float, significant_bits: int) -> float:
    """Round a normal float to ``significant_bits`` bits, ties to even (Python's round)."""
    mantissa, exponent = math.frexp(value)
    return math.ldexp(round(mantissa * 2**significant_bits), exponent - significant_bits)


@settings(max_examples=200, deadline=None)
@given(st.floats(min_value=2.0**-100, max_value=2.0**100, width=32), st.booleans())
def test_property_bfloat16_and_float16_match_a_reference_rounding(value, negative):
    x = np.array([-value if negative else value], np.float32)
    assert round_values(x, "bfloat16")[0] == np.float32(reference_round(float(x[0]), 8))
    if 1e-4 < value < 6e4:  # float16 normal range
        assert round_values(x, "float16")[0] == np.float32(reference_round(float(x[0]), 11))


@pytest.mark.parametrize(
    "value,f16,bf16",
    [
        (1 + 2**-11, 1.0, 1.0),  # f16 tie (half an ulp of 2**-10): to even, down
        (1 + 3 * 2**-11, 1 + 2**-9, 1.0),  # f16 tie: to even, up
        (1 + 2**-8, 1 + 2**-8, 1.0),  # bf16 tie (half an ulp of 2**-7): to even, down
        (1 + 3 * 2**-8, 1 + 3 * 2**-8, 1 + 2**-6),  # bf16 tie: to even, up
        (1 + 2**-8 + 2**-20, 1 + 2**-8, 1 + 2**-7),  # above the tie: up
        (70000.0, np.inf, 70144.0),  # f16 overflow is inf (IEEE); bf16 ulp here is 512
        (3.4028235e38, np.inf, np.inf),  # float32 max rounds past bf16 max
        (-1e-30, 0.0, None),  # f16 underflow to (canonical +) zero
    ],
)
def test_narrow_types_round_to_nearest_even(value, f16, bf16):
    x = np.array([value], np.float32)
    if bf16 is None:
        bf16 = reference_round(float(x[0]), 8)
    for dtype, want in (("float16", f16), ("bfloat16", bf16)):
        got = round_values(x, dtype)
        expect = np.array([want], np.float32)
        np.testing.assert_array_equal(bits(got), bits(expect), err_msg=dtype)
        out = encodings.decode(encodings.encode(x, value_dtype=dtype), n=1)
        np.testing.assert_array_equal(bits(out), bits(expect), err_msg=dtype)


def test_narrow_types_keep_nan_and_halve_value_bytes():
    x = np.array([np.nan, 0, 1.0, -np.nan], np.float32)
    for dtype in ("float16", "bfloat16"):
        out = encodings.decode(encodings.encode(x, value_dtype=dtype, method="coo"), n=4)
        assert np.isnan(out[0]) and np.isnan(out[3]) and out[2] == 1.0 and out[1] == 0
    big = sparse_vector(10_000, 100)
    full = encodings.plan(big, method="coo")
    half = encodings.plan(big, value_dtype="bfloat16", method="coo")
    assert full.value_bytes == 2 * half.value_bytes == 400
    assert full.index_bytes == half.index_bytes == 400


def test_underflow_to_zero_leaves_the_support():
    x = np.zeros(100, np.float32)
    x[[3, 50]] = [1e-30, 2.0]
    info = encodings.plan(x, value_dtype="float16", method="coo")
    assert info.count == 1


def test_shared_mask_sends_values_only():
    n = 10_000
    rng = np.random.default_rng(1)
    mask = rng.random(n) < 0.1
    x = np.where(mask, rng.standard_normal(n), 0).astype(np.float32)
    x[np.flatnonzero(mask)[:5]] = 0  # zeros inside the mask still travel (mask order)
    buf = encodings.encode(x, shared_mask=mask)
    info = encodings.describe(buf)
    k = int(mask.sum())
    assert info.method == "values" and len(buf) == expected_size("values", n, 0, 4, k)
    assert info.index_bytes == 0 and info.value_bytes == 4 * k
    np.testing.assert_array_equal(encodings.decode(buf, n=n, shared_mask=mask), x)
    with pytest.raises(ValueError, match="shared_mask"):
        encodings.decode(buf, n=n)
    x[np.flatnonzero(~mask)[0]] = 1.0  # a non-zero outside the mask: values-only impossible
    assert "values" not in encodings.plan(x, shared_mask=mask).candidates
    with pytest.raises(ValueError, match="values"):
        encodings.encode(x, shared_mask=mask, method="values")


def test_segments_choose_per_tensor_and_decode_exactly():
    rng = np.random.default_rng(2)
    dense_part = rng.standard_normal(2000).astype(np.float32)  # e.g. biases, norms: dense
    sparse_part = sparse_vector(200_000, 200)  # a pruned layer
    x = np.concatenate([dense_part, sparse_part])
    segments = [2000, 200_000]
    info = encodings.plan(x, segments=segments)
    whole = encodings.plan(x)
    assert info.method == "segmented" and info.total_bytes < whole.total_bytes
    assert [p.method for p in info.parts] == ["dense", "delta"]
    buf = encodings.encode(x, segments=segments)
    assert len(buf) == info.total_bytes == encodings.describe(buf).total_bytes
    assert info.total_bytes == 16 + 4 * 2 + sum(p.total_bytes for p in info.parts)
    np.testing.assert_array_equal(bits(encodings.decode(buf, n=x.size)), bits(x))
    # A uniform vector: one encoding is smaller than the container, and auto keeps it.
    uniform = sparse_vector(4000, 40)
    assert encodings.plan(uniform, segments=[2000, 2000]).method != "segmented"
    forced = encodings.encode(uniform, method="segmented", segments=[2000, 2000])
    assert encodings.describe(forced).method == "segmented"
    np.testing.assert_array_equal(encodings.decode(forced, n=4000), uniform)
    with pytest.raises(ValueError, match="segments"):
        encodings.plan(uniform, segments=[1, 2])


def test_bad_input_is_refused():
    with pytest.raises(ValueError, match="1-D"):
        encodings.encode(np.zeros((2, 2), np.float32))
    with pytest.raises(ValueError, match="value_dtype"):
        encodings.encode(np.zeros(3, np.float32), value_dtype="int8")
    with pytest.raises(ValueError, match="method"):
        encodings.encode(np.zeros(3, np.float32), method="zip")
    buf = encodings.encode(sparse_vector(100, 5))
    with pytest.raises(ValueError, match="length"):
        encodings.decode(buf, n=99)
    with pytest.raises(ValueError, match="corrupt"):
        encodings.decode(buf[:-1], n=100)
    with pytest.raises(ValueError, match="magic"):
        encodings.decode(np.zeros(40, np.uint8), n=100)


# --------------------------------------------------------------------------- masks


@pytest.mark.parametrize("n,true", [(1, 0), (1, 1), (9, 4), (1000, 0), (1000, 7), (1000, 500),
                                    (1000, 993), (1000, 1000)])  # fmt: skip
def test_mask_round_trip_every_method_and_auto_smallest(n, true):
    rng = np.random.default_rng(n + true)
    mask = np.zeros(n, bool)
    mask[rng.choice(n, true, replace=False)] = True
    sizes = {}
    for method in encodings.MASK_METHODS:
        buf = encodings.encode_mask(mask, method=method)
        sizes[method] = len(buf)
        assert encodings.plan_mask(mask, method=method).total_bytes == len(buf)
        assert encodings.describe(buf).method == method
        np.testing.assert_array_equal(encodings.decode_mask(buf, n=n), mask)
    assert sizes["bitmap"] == 16 + math.ceil(n / 8)
    assert sizes["coo"] == 16 + 4 * true and sizes["coo_complement"] == 16 + 4 * (n - true)
    assert sizes["delta"] == 16 + bitpack.elias_fano_nbytes(n, true)
    assert len(encodings.encode_mask(mask)) == min(sizes.values())


def test_mask_change_travels_as_the_xor():
    rng = np.random.default_rng(3)
    old = rng.random(100_000) < 0.2
    new = old.copy()
    new[rng.choice(old.size, 100, replace=False)] ^= True
    buf = encodings.encode_mask_change(old, new)
    assert len(buf) < 16 + 100 * 3  # about 2.6 bytes per changed position
    np.testing.assert_array_equal(encodings.apply_mask_change(old, buf), new)
    full = np.ones(1000, bool)  # a full mask costs a header: its complement is empty
    assert len(encodings.encode_mask(full)) == 16
    with pytest.raises(ValueError, match="bool"):
        encodings.encode_mask(np.ones(5, np.int8))
    with pytest.raises(ValueError, match="decode_mask"):
        encodings.decode(encodings.encode_mask(full), n=1000)


# --------------------------------------------------------------------------- bounds, bits


def test_information_bound():
    assert encodings.information_bound_bytes(8, 4) == pytest.approx(16 + math.log2(70) / 8)
    assert encodings.information_bound_bytes(10, 0) == 0
    assert encodings.information_bound_bytes(10, 10, value_bytes=2) == pytest.approx(20)
    big = encodings.information_bound_bytes(10**7, 10**4)
    exact = 4e4 + math.log2(math.comb(10**7, 10**4)) / 8
    assert big == pytest.approx(exact, rel=1e-9)
    with pytest.raises(ValueError):
        encodings.information_bound_bytes(5, 6)


@pytest.mark.parametrize("density", [0.0001, 0.001, 0.01, 0.05, 0.1])
def test_sparse_random_supports_within_115_percent_of_the_bound(density):
    n = 1_000_000
    nnz = int(n * density)
    size = encodings.plan(sparse_vector(n, nnz, seed=5)).total_bytes
    assert size <= 1.15 * encodings.information_bound_bytes(n, nnz)


@pytest.mark.parametrize("width", [1, 2, 3, 7, 8, 9, 13, 16, 17, 24, 31, 32])
def test_pack_uint_round_trip(width):
    rng = np.random.default_rng(width)
    values = rng.integers(0, 2**width, size=1003)
    packed = bitpack.pack_uint(values, width)
    assert packed.size == math.ceil(1003 * width / 8)
    np.testing.assert_array_equal(bitpack.unpack_uint(packed, width, 1003), values)


@pytest.mark.parametrize("n,m", [(1, 1), (2, 1), (64, 3), (1000, 999), (100_000, 77),
                                 (100_000, 30_000)])  # fmt: skip
def test_elias_fano_and_bitmap_round_trip(n, m):
    idx = np.sort(np.random.default_rng(m).choice(n, m, replace=False)).astype(np.int64)
    stream, _ = bitpack.elias_fano_encode(idx, n)
    assert stream.size == bitpack.elias_fano_nbytes(n, m)
    np.testing.assert_array_equal(bitpack.elias_fano_decode(stream, n, m), idx)
    bitmap = bitpack.indices_to_bitmap(idx, n)
    flags = np.zeros(n, bool)
    flags[idx] = True
    np.testing.assert_array_equal(bitmap, np.packbits(flags, bitorder="little"))
    np.testing.assert_array_equal(bitpack.bitmap_to_indices(bitmap, n), idx)


# --------------------------------------------------------------------------- properties

floats = hnp.arrays(
    np.float32,
    st.integers(1, 300),
    elements=st.one_of(st.just(0.0), st.floats(width=32, allow_nan=True)),
)


@settings(max_examples=60, deadline=None)
@given(x=floats, value_dtype=st.sampled_from(["float32", "float16", "bfloat16"]))
def test_property_decode_is_the_rounded_vector(x, value_dtype):
    want = bits(round_values(x, value_dtype))
    for method in ("auto", *SPECIFIC):
        buf = encodings.encode(x, value_dtype=value_dtype, method=method)
        assert len(buf) == encodings.plan(x, value_dtype=value_dtype, method=method).total_bytes
        np.testing.assert_array_equal(bits(encodings.decode(buf, n=x.size)), want)


@settings(max_examples=60, deadline=None)
@given(mask=hnp.arrays(np.bool_, st.integers(1, 2000)), data=st.data())
def test_property_values_only_and_masks(mask, data):
    n = mask.size
    x = np.zeros(n, np.float32)
    values = hnp.arrays(np.float32, int(mask.sum()), elements=st.floats(-9, 9, width=32))
    x[mask] = data.draw(values)
    buf = encodings.encode(x, shared_mask=mask)
    assert len(buf) <= len(encodings.encode(x, method="coo"))
    np.testing.assert_array_equal(bits(encodings.decode(buf, n=n, shared_mask=mask)), bits(x + 0))
    np.testing.assert_array_equal(encodings.decode_mask(encodings.encode_mask(mask), n=n), mask)
