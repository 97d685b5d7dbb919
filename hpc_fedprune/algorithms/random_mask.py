"""A fixed random mask from round 1 (docs/methods.md, "Random and ERK masks").

``distribution: uniform`` prunes ``floor(s * N)`` prunable entries drawn uniformly;
``erk`` gives each tensor its ERK density (Evci et al. 2020) and draws positions inside
it. The positions come from ``numpy_rng(seed, Stream.MASK, 0)``: the same mask on every
rank and after a resume. Clients train under it; it never changes (FedDST with
readjustment 0).
"""

from __future__ import annotations

from ..pruning.erk import erk_random_mask, random_mask
from ..rng import Stream, numpy_rng
from .base import Algorithm


class RandomMask(Algorithm):
    """FedAvg under a fixed uniform or ERK random mask."""

    name = "random_mask"
    prunes = True
    channels_within_mask = True  # clients train under the fixed mask

    def initial_mask(self, *, weights, gradient=None, train=None, exploration=None):
        cfg = self.config.algorithm.random_mask
        rng = numpy_rng(self.config.runtime.seed, Stream.MASK, 0)
        if cfg.distribution == "erk":
            mask = erk_random_mask(self.layout, self.prunable, 1.0 - cfg.sparsity, rng)
        else:
            mask = random_mask(self.prunable, cfg.sparsity, rng)
        return self.sparse_start_(weights, mask)
