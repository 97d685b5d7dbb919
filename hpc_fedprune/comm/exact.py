"""Exact, order-free sums of client contributions: fixed-point int64.

Floating-point addition is not associative, so summing the same client updates in another
order (another rank count, another schedule) changes the last bits of the global model.
Integer addition is associative and exact. Each client contribution is therefore turned
into int64 fixed point *once, on the client's own data* (independent of which rank trains
it), and every later sum, inside a rank and across ranks, is an integer sum.

Scale: ``FRAC_BITS = 40`` fractional bits, a resolution of 2**-40 (about 9e-13), far finer
than float32 (2**-24 relative). The integer part has 62 - 40 = 22 bits, so a single
contribution must satisfy ``|value| < 2**22 / cohort_size`` (``check_range`` enforces it
with a clear message): a weighted mean of updates is bounded by the largest update, which
is never near four million in practice, and NaN or infinity means training diverged.
"""

from __future__ import annotations

import numpy as np

FRAC_BITS = 40
SCALE = float(2**FRAC_BITS)
# Headroom: sums of up to ``cohort`` values each below LIMIT / cohort never pass 2**62.
LIMIT = float(2**62)


class ExactRangeError(ArithmeticError):
    """A contribution does not fit the fixed-point range (diverged training or huge values)."""


def to_fixed(values: np.ndarray, *, cohort_size: int = 1, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Quantise float values to int64 fixed point with ``frac_bits`` fractional bits.

    Parameters
    ----------
    values : numpy.ndarray
        Float32 or float64 values (converted to float64 before scaling, so the result
        depends only on the values themselves).
    cohort_size : int
        How many such contributions will be summed; the range check guarantees that
        their sum cannot overflow.
    frac_bits : int
        Fractional bits of the fixed-point format.

    Returns
    -------
    numpy.ndarray
        int64 array of the same shape: ``round(values * 2**frac_bits)``.

    Raises
    ------
    ExactRangeError
        If a value is NaN, infinite or too large for the sum to stay in range.
    """
    scaled = np.asarray(values, dtype=np.float64) * float(2**frac_bits)
    bound = LIMIT / max(int(cohort_size), 1)
    if scaled.size:
        peak = float(np.max(np.abs(scaled)))
        if not np.isfinite(peak):
            raise ExactRangeError("a client update holds NaN or infinity: training diverged")
        if peak >= bound:
            raise ExactRangeError(
                f"a client update of magnitude {peak / 2**frac_bits:.3g} exceeds the exact "
                f"accumulator's range ({bound / 2**frac_bits:.3g} for {cohort_size} clients)"
            )
    return np.rint(scaled).astype(np.int64)


def from_fixed(fixed: np.ndarray, *, frac_bits: int = FRAC_BITS) -> np.ndarray:
    """Turn an int64 fixed-point sum back into float64 (deterministic rounding)."""
    return np.asarray(fixed, dtype=np.int64).astype(np.float64) / float(2**frac_bits)
