"""The traffic figures a run is judged by: one name and one definition each, used everywhere.

The end-of-run line, ``analyze``, ``compare`` and their CSV files print these names, and
the README's "Figures" section explains them with the same words as `DEFINITIONS`.

"Dense" is ``bytes_up_dense_equiv``: what the same clients would have uploaded as dense
float32 vectors over the same rounds. A dense download of the global model is exactly as
large, so the same number is the dense reference for the downlink, and twice it for both
directions together.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

NAN = float("nan")

#: Each figure's name and what it is, in the words of the README.
DEFINITIONS: dict[str, str] = {
    "uplink_vs_dense": "bytes_up / dense: client uploads against dense float32 uploads",
    "downlink_vs_dense": "bytes_down / dense: client downloads against dense downloads",
    "traffic_vs_dense": "(bytes_up + bytes_down) / (2 x dense): all client traffic, both "
    "directions, against dense traffic both ways",
}


def _ratio(a: float, b: float) -> float:
    return a / b if b > 0 and math.isfinite(b) and math.isfinite(a) else NAN


def uplink_vs_dense(bytes_up: float, dense: float) -> float:
    """Uplink bytes over their dense equivalent (NaN without a dense reference)."""
    return _ratio(bytes_up, dense)


def downlink_vs_dense(bytes_down: float, dense: float) -> float:
    """Downlink bytes over the dense equivalent (a dense download = a dense upload)."""
    return _ratio(bytes_down, dense)


def traffic_vs_dense(bytes_up: float, bytes_down: float, dense: float) -> float:
    """All client traffic, up plus down, over dense traffic both ways: ``2 x dense``."""
    return _ratio(bytes_up + bytes_down, 2 * dense)


@dataclass(frozen=True)
class Traffic:
    """A run's client traffic over all its rounds, with the three figures.

    Attributes
    ----------
    bytes_up, bytes_down : float
        Sums of ``/metrics/bytes_up`` and ``/metrics/bytes_down``.
    dense : float
        Sum of ``/metrics/bytes_up_dense_equiv``.
    """

    bytes_up: float
    bytes_down: float
    dense: float

    @property
    def total(self) -> float:
        """Uplink plus downlink bytes."""
        return self.bytes_up + self.bytes_down

    @property
    def uplink_vs_dense(self) -> float:
        """See `uplink_vs_dense`."""
        return uplink_vs_dense(self.bytes_up, self.dense)

    @property
    def downlink_vs_dense(self) -> float:
        """See `downlink_vs_dense`."""
        return downlink_vs_dense(self.bytes_down, self.dense)

    @property
    def traffic_vs_dense(self) -> float:
        """See `traffic_vs_dense`."""
        return traffic_vs_dense(self.bytes_up, self.bytes_down, self.dense)


def _total(metrics: Mapping[str, np.ndarray], key: str) -> float:
    values = metrics.get(key)
    return float(np.sum(values, dtype=np.float64)) if values is not None else NAN


def traffic_of(metrics: Mapping[str, np.ndarray]) -> Traffic:
    """The traffic of a run from its ``/metrics`` arrays (NaN for missing ones)."""
    return Traffic(
        bytes_up=_total(metrics, "bytes_up"),
        bytes_down=_total(metrics, "bytes_down"),
        dense=_total(metrics, "bytes_up_dense_equiv"),
    )
