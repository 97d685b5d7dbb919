"""One-shot magnitude pruning (FedSparsify's OneShot baseline; docs/methods.md).

FedAvg dense up to round ``prune_round`` (t0). After aggregating round t0 the server prunes
the global model once to ``sparsity`` by global magnitude; that mask stays for the rest of
the run (clients train under it and the server keeps applying it).
"""

from __future__ import annotations

from ..errors import InputError
from ..pruning.magnitude import global_magnitude_mask
from .base import Algorithm


class OneShot(Algorithm):
    """Dense FedAvg, one global magnitude pruning step at t0, then the fixed mask."""

    name = "oneshot"
    prunes = True
    channels_within_mask = True  # after t0 clients train under the fixed mask

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = self.config.algorithm.oneshot
        if self.cfg.prune_round > self.config.federation.rounds:
            raise InputError(
                f"algorithm.oneshot.prune_round={self.cfg.prune_round} is after the last "
                f"round ({self.config.federation.rounds}): the run would never prune"
            )

    def server_prune(self, *, ctx, weights, sums, old):
        """After aggregating round t0: global magnitude to ``sparsity``, once."""
        if ctx.round != self.cfg.prune_round:
            return old
        return global_magnitude_mask(weights, self.prunable, self.cfg.sparsity)
