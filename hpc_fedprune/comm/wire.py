"""Value types on the wire: float32, float16 and bfloat16, with exact rounding rules.

Both narrow types round to nearest, ties to even (IEEE 754 default), on the float32 bit
pattern: the value a receiver decodes is the rounded value, and ``round_values`` gives
that same value on the sender (so the sender can keep exactly what the receivers see).
Overflow gives +-inf (float16 above 65504, bfloat16 above about 3.39e38), values below
the smallest subnormal become +-0, NaN stays NaN (bfloat16 forces the quiet bit so that
a NaN never truncates to infinity).

Zeros are canonical: -0.0 travels (and decodes) as +0.0, in every type and every encoding.
A signed zero carries nothing a model needs, and ``w * mask`` gives -0.0 at every pruned
negative weight: treating it as a non-zero would make a pruned model look dense.
"""

from __future__ import annotations

import numpy as np

VALUE_DTYPES: dict[str, int] = {"float32": 0, "float16": 1, "bfloat16": 2}
CODE_TO_DTYPE: dict[int, str] = {code: name for name, code in VALUE_DTYPES.items()}
ITEMSIZE: dict[str, int] = {"float32": 4, "float16": 2, "bfloat16": 2}


def dtype_code(value_dtype: str) -> int:
    """Wire code of ``value_dtype`` ('float32', 'float16' or 'bfloat16')."""
    try:
        return VALUE_DTYPES[value_dtype]
    except KeyError:
        raise ValueError(
            f"value_dtype must be one of {sorted(VALUE_DTYPES)}, got {value_dtype!r}"
        ) from None


def to_wire(values: np.ndarray, value_dtype: str) -> np.ndarray:
    """float32 values as the unsigned-integer bit patterns that travel (uint32 or uint16).

    Rounded to nearest even for the narrow types; -0.0 becomes +0.0 (see module docstring).
    """
    x = np.ascontiguousarray(values, dtype=np.float32)
    if value_dtype == "float32":
        bits = x.view(np.uint32)
        sign = np.uint32(0x80000000)
    elif value_dtype == "float16":
        # numpy's float32 -> float16 cast rounds to nearest even; overflow to inf is IEEE.
        with np.errstate(over="ignore", under="ignore", invalid="ignore"):
            bits = x.astype(np.float16).view(np.uint16)
        sign = np.uint16(0x8000)
    elif value_dtype == "bfloat16":
        u = x.view(np.uint32)
        # Round to nearest even: add 0x7FFF plus the lowest kept bit, then truncate.
        half = np.uint32(0x7FFF) + ((u >> np.uint32(16)) & np.uint32(1))
        rounded = (u + half) >> np.uint32(16)
        nan = np.isnan(x)
        if nan.any():
            rounded[nan] = (u[nan] >> np.uint32(16)) | np.uint32(0x0040)
        bits = rounded.astype(np.uint16)
        sign = np.uint16(0x8000)
    else:
        dtype_code(value_dtype)  # raises with the list of valid names
        raise AssertionError("unreachable")
    negative_zero = bits == sign
    if negative_zero.any():
        bits = np.where(negative_zero, bits.dtype.type(0), bits)
    return bits


def from_wire(bits: np.ndarray, value_dtype: str) -> np.ndarray:
    """Inverse of :func:`to_wire`: float32 values (exactly the rounded ones)."""
    if value_dtype == "float32":
        return np.ascontiguousarray(bits, dtype=np.uint32).view(np.float32)
    if value_dtype == "float16":
        return np.ascontiguousarray(bits, dtype=np.uint16).view(np.float16).astype(np.float32)
    if value_dtype == "bfloat16":
        wide = np.ascontiguousarray(bits, dtype=np.uint16).astype(np.uint32) << np.uint32(16)
        return wide.view(np.float32)
    dtype_code(value_dtype)
    raise AssertionError("unreachable")


def round_values(values: np.ndarray, value_dtype: str = "float32") -> np.ndarray:
    """The float32 values a receiver decodes after sending ``values`` as ``value_dtype``.

    Parameters
    ----------
    values : numpy.ndarray
        Values (converted to float32 first).
    value_dtype : str
        'float32' (identity), 'float16' or 'bfloat16' (round to nearest, ties to even).

    Returns
    -------
    numpy.ndarray
        float32 array of the same shape.
    """
    x = np.asarray(values, dtype=np.float32)
    return from_wire(to_wire(x.reshape(-1), value_dtype), value_dtype).reshape(x.shape)


def round_to_wire_(values, value_dtype: str = "float32"):
    """Round a float32 torch tensor in place to what a receiver decodes; returns it.

    The torch twin of `round_values` (the same bits, tested together): nearest even in
    ``value_dtype`` and -0.0 made +0.0. Adding +0.0 is what canonicalises the zeros: in
    IEEE arithmetic ``-0.0 + 0.0 = +0.0`` and ``x + 0.0 = x`` for every other ``x``, so it
    costs one pass and no temporary.
    """
    import torch

    if value_dtype != "float32":
        dtype_code(value_dtype)  # raises with the list of valid names
        values.copy_(values.to(getattr(torch, value_dtype)).to(torch.float32))
    return values.add_(0.0)
