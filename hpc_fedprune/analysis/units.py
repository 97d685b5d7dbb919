"""Human-readable numbers: bytes in decimal units, durations, percentages."""

from __future__ import annotations

import math

# Decimal (SI) units, as network traffic is usually quoted: 1 MB = 10**6 bytes.
_BYTE_UNITS = (("B", 1.0), ("kB", 1e3), ("MB", 1e6), ("GB", 1e9), ("TB", 1e12))


def byte_unit(largest: float) -> tuple[str, float]:
    """The unit (name, size in bytes) that shows ``largest`` bytes as 1 to 999 units."""
    name, size = _BYTE_UNITS[0]
    for unit, factor in _BYTE_UNITS:
        if abs(largest) >= factor:
            name, size = unit, factor
    return name, size


def format_bytes(n: float) -> str:
    """``12345678`` -> ``"12.3 MB"``; NaN -> ``"n/a"``."""
    if n is None or not math.isfinite(n):
        return "n/a"
    unit, size = byte_unit(n)
    if unit == "B":
        return f"{int(n)} B"
    return f"{n / size:.3g} {unit}"


def format_duration(seconds: float) -> str:
    """``192.4`` -> ``"3 min 12 s"``; under a minute with one decimal."""
    if seconds is None or not math.isfinite(seconds):
        return "n/a"
    if seconds < 60:
        return f"{seconds:.1f} s"
    s = int(round(seconds))
    h, rest = divmod(s, 3600)
    m, s = divmod(rest, 60)
    return f"{h} h {m:02d} min" if h else f"{m} min {s:02d} s"


def format_percent(fraction: float, digits: int = 1) -> str:
    """``0.8812`` -> ``"88.1 %"``; NaN -> ``"n/a"``."""
    if fraction is None or not math.isfinite(fraction):
        return "n/a"
    return f"{100 * fraction:.{digits}f} %"
