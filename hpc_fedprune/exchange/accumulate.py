"""Exact pre-aggregation of client contributions inside a rank (fixed point, on device).

Each contribution is quantised once to int64 fixed point (see `hpc_fedprune.comm.exact`)
on the rank's device and added to the rank's integer accumulator. Integer sums do not
depend on order, so neither the schedule nor the number of ranks changes a single bit of
the result.
"""

from __future__ import annotations

import numpy as np
import torch

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

    def add(self, channels: dict[str, torch.Tensor]) -> None:
        """Quantise and add one client's channels (float64 tensors)."""
        for name, values in channels.items():
            scale = float(2 ** self.bits[name])
            scaled, fixed = self._scratch(values)
            # round(values * 2**bits) as int64, through two reused buffers: the same
            # operations as ``torch.round(values.double() * scale).to(torch.int64)``
            # (scaling by a power of two is exact), without four fresh model-sized
            # temporaries per client, whose allocation costs page faults on the CPU.
            if values.dtype == torch.float64:
                torch.mul(values, scale, out=scaled)
            else:
                scaled.copy_(values)
                scaled.mul_(scale)
            if scaled.numel():
                lo, hi = torch.stack(torch.aminmax(scaled)).tolist()  # one host sync
                if not (np.isfinite(lo) and np.isfinite(hi)):
                    raise ExactRangeError(
                        "a client update holds NaN or infinity: training diverged"
                    )
                peak = max(-lo, hi)  # = max |scaled|
                if peak >= self.bound:
                    raise ExactRangeError(
                        f"channel {name!r}: a client contribution of "
                        f"{peak / 2 ** self.bits[name]:.3g} exceeds the exact accumulator's range"
                    )
            scaled.round_()
            fixed.copy_(scaled)
            self.sums[name].add_(fixed)

    def _scratch(self, values: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """float64 and int64 work buffers shaped like ``values``, kept between clients."""
        work = self._work
        if work is None or work[0].shape != values.shape or work[0].device != values.device:
            work = self._work = (
                torch.empty(values.shape, dtype=torch.float64, device=values.device),
                torch.empty(values.shape, dtype=torch.int64, device=values.device),
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
