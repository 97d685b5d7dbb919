"""Exact pre-aggregation of client contributions inside a rank (fixed point, on device).

Each contribution is quantised once to int64 fixed point (see `hpc_fedprune.comm.exact`)
on the rank's device and added to the rank's integer accumulator. Integer sums do not
depend on order, so neither the schedule nor the number of ranks changes a single bit of
the result.
"""

from __future__ import annotations

import numpy as np
import torch

from ..algorithms.base import Difference
from ..comm.exact import LIMIT, ExactRangeError


class ExactAccumulator:
    """Per-rank int64 sums of named channels.

    Parameters
    ----------
    channel_bits : dict
        ``name -> fractional bits`` of every channel the algorithm uploads; all ranks
        declare the same channels, so the reduction has the same shape everywhere.
    numel : int
        Length of each channel (the flat model).
    cohort_size : int
        Contributions summed per channel over all ranks (for the range check).
    device : torch.device or str
    """

    def __init__(self, channel_bits: dict[str, int], numel: int, cohort_size: int, device) -> None:
        self.bits = dict(sorted(channel_bits.items()))
        self.numel = numel
        self.bound = LIMIT / max(cohort_size, 1)
        self.sums = {
            name: torch.zeros(numel, dtype=torch.int64, device=device) for name in self.bits
        }
        self._work: tuple[torch.Tensor, torch.Tensor] | None = None
        self._reference: tuple[torch.Tensor, torch.Tensor] | None = None

    @classmethod
    def for_channels(cls, channels, numel: int, cohort_size: int, device) -> ExactAccumulator:
        """An accumulator of an algorithm's declared channels (``name -> Channel``)."""
        bits = {name: channel.bits for name, channel in channels.items()}
        return cls(bits, numel, cohort_size, device)

    def add_client(self, values, channels, weight: float) -> None:
        """Add one client's channel values: weighted channels scaled by its weight ``p_c``.

        ``values`` maps channel names to tensors or `Difference`s (a client may leave a
        channel out: it adds nothing there); ``channels`` is the algorithm's declaration.
        """
        for name, value in values.items():
            self.add(name, value, scale=weight if channels[name].weighted else 1.0)

    def add(self, name: str, values, *, scale: float = 1.0) -> None:
        """Quantise ``scale * values`` and add it to channel ``name``.

        ``values`` is a float tensor, or a `Difference` formed here in float64 (the
        client's update ``w_c - w_global`` without a model-sized temporary of its own).
        ``scale`` is the client's sample weight for weighted channels. The result is
        ``round(scale * values * 2**bits)``, which equals scaling first and quantising
        after: ``2**bits`` is a power of two, so multiplying by ``scale * 2**bits`` rounds
        exactly once, as ``scale * values`` does.
        """
        factor = scale * float(2 ** self.bits[name])
        scaled, fixed = self._scratch(values)
        if isinstance(values, Difference):
            scaled.copy_(values.minuend)
            scaled.sub_(self._float64(values.subtrahend))
            scaled.mul_(factor)
        elif values.dtype == torch.float64:
            torch.mul(values, factor, out=scaled)
        else:
            scaled.copy_(values)
            scaled.mul_(factor)
        if scaled.numel():
            lo, hi = torch.stack(torch.aminmax(scaled)).tolist()  # one host sync
            if not (np.isfinite(lo) and np.isfinite(hi)):
                raise ExactRangeError("a client update holds NaN or infinity: training diverged")
            peak = max(-lo, hi)  # = max |scaled|
            if peak >= self.bound:
                raise ExactRangeError(
                    f"channel {name!r}: a client contribution of "
                    f"{peak / 2 ** self.bits[name]:.3g} exceeds the exact accumulator's range"
                )
        scaled.round_()
        fixed.copy_(scaled)
        self.sums[name].add_(fixed)

    def _float64(self, reference: torch.Tensor) -> torch.Tensor:
        """``reference`` in float64, converted once while the same tensor is passed."""
        cached = self._reference
        if cached is None or cached[0] is not reference:
            self._reference = cached = (reference, reference.double())
        return cached[1]

    def _scratch(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 and int64 work buffers shaped like ``values``, kept between clients."""
        like = values.minuend if isinstance(values, Difference) else values
        work = self._work
        if work is None or work[0].shape != like.shape or work[0].device != like.device:
            work = self._work = (
                torch.empty(like.shape, dtype=torch.float64, device=like.device),
                torch.empty(like.shape, dtype=torch.int64, device=like.device),
            )
        return work

    def tile(self, mask: torch.Tensor | None) -> np.ndarray | None:
        """A bool support over the packed vector: ``mask`` repeated for every channel."""
        if mask is None:
            return None
        return np.tile(mask.cpu().numpy(), len(self.bits))

    def packed(self) -> np.ndarray:
        """All channels as one int64 host vector (channel order: sorted names)."""
        return torch.cat([self.sums[name] for name in self.bits]).cpu().numpy()

    def unpack(self, total: np.ndarray, device) -> dict[str, torch.Tensor]:
        """Split a reduced vector back into float64 channels on ``device``."""
        out = {}
        for i, (name, bits) in enumerate(self.bits.items()):
            part = total[i * self.numel : (i + 1) * self.numel]
            out[name] = torch.from_numpy(part.astype(np.float64) / float(2**bits)).to(device)
        return out
