"""SNIP: a mask fixed at initialisation from connection sensitivity (docs/methods.md, SNIP).

Before round 1 one client, drawn from ``numpy_rng(seed, Stream.MASK, 0)``, gives the loss
gradient ``g`` at the initial weights ``w`` on the first batch of a permutation drawn from
the same generator; the mask keeps the ``1 - s`` of the prunable set with the largest
``|g * w|``. Norm layers are never pruned. The mask never changes; clients re-apply it
after every step (the base ``train_mask``), so uploads travel as values over it.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..pruning.prunable import prunable_mask
from ..pruning.saliency import snip_mask
from ..rng import Stream, numpy_rng
from .base import Algorithm, GradientFn


class SNIP(Algorithm):
    """FedAvg under a one-shot SNIP mask computed from one batch of one sampled client."""

    name = "snip"
    prunes = True
    channels_within_mask = True  # clients train under the fixed mask

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = self.config.algorithm.snip
        # SNIP scores connections; norm scales and shifts are not (FedSparsify's baseline).
        no_norm = prunable_mask(
            self.layout, self.cfg.prunable, exclude_norm=True, device=self.prunable.device
        )
        self.prunable = self.prunable & no_norm

    def choose(self):
        """The scoring client and the generator that then draws its batch (rank-free key)."""
        rng = numpy_rng(self.config.runtime.seed, Stream.MASK, 0)
        return int(rng.integers(self.config.partition.num_clients)), rng

    def initial_mask(
        self,
        *,
        weights: torch.Tensor,
        gradient: GradientFn | None = None,
        train=None,
        exploration=None,
    ) -> torch.Tensor:
        if gradient is None:
            raise InputError("snip needs the loss gradient at the initial weights")
        client, rng = self.choose()
        grad = gradient(client, rng).to(weights.device)
        return self.sparse_start_(
            weights, snip_mask(weights, grad, self.prunable, self.cfg.sparsity)
        )
