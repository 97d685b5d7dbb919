"""One-shot magnitude pruning (FedSparsify's OneShot baseline, ALGORITHMS.md s3.7).

FedAvg dense up to round ``prune_round`` (t0). After aggregating round t0 the server prunes
the global model once to ``sparsity`` by global magnitude; that mask stays for the rest of
the run (clients train under it and the server keeps applying it).
"""

from __future__ import annotations

from ..errors import InputError
from ..pruning.magnitude import global_magnitude_mask
from .base import Algorithm, GlobalModel


class OneShot(Algorithm):
    """Dense FedAvg, one global magnitude pruning step at t0, then the fixed mask."""

    name = "oneshot"
    prunes = True
    channels_within_mask = True  # after t0 clients train under the fixed mask

    def __init__(self, config, prunable, trainable) -> None:
        super().__init__(config, prunable, trainable)
        self.cfg = config.algorithm.oneshot
        if self.cfg.prune_round > config.federation.rounds:
            raise InputError(
                f"algorithm.oneshot.prune_round={self.cfg.prune_round} is after the last "
                f"round ({config.federation.rounds}): the run would never prune"
            )

    def server_step(self, ctx, sums, model) -> GlobalModel:
        new = super().server_step(ctx, sums, model)  # FedAvg(M), under the mask once it exists
        if ctx.round != self.cfg.prune_round:
            return new
        mask = global_magnitude_mask(new.weights, self.prunable, self.cfg.sparsity)
        return GlobalModel(new.weights.mul_(mask), mask)
