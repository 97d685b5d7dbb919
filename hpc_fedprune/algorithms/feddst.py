"""FedDST: federated dynamic sparse training (Bibikar et al. 2022; docs/methods.md).

- Mask: ERK at ``sparsity`` (exact per-tensor counts, `erk_counts`), random positions
  from ``numpy_rng(seed, Stream.MASK, 0)``, fixed before round 1; the initial weights
  are multiplied by it. Clients train under the global mask (re-applied after every step).
- Readjustment in rounds ``k, 2k, ...`` (``k = readjust_interval``): before its last
  local epoch (`ClientPlan.readjust`; with one local epoch, before the first step) each
  client drops, per tensor, ``floor(alpha_t * active)`` active weights of smallest
  magnitude and regrows as many inactive ones with the largest gradient magnitude (one
  batch keyed by seed, round and client, at its current weights); regrown weights start
  at 0 and train through the last epoch, so they reach the server with the values their
  gradient gave them (the paper trains after the readjustment; a regrown weight uploaded
  at 0 would average to 0 and leave the server nothing to rank it by).
  ``alpha_t = alpha / 2 * (1 + cos(pi * t / T))`` with ``t`` the round and ``T =
  decay_end`` (default the last round). The client sends its mask and its values over it.
- Server: every weight is averaged over the clients that hold it, weighted by samples
  (``sum p_c m_c w_c / sum p_c m_c``; exact sums); in readjustment rounds the average is
  pruned layer-wise by magnitude back to the ERK counts, among the weights held by more
  than ``min_votes`` clients first. Every tensor therefore keeps its ERK density exactly.
  ``federation.server_lr`` and ``server_momentum`` are not used (the method averages).
- Ties: equal magnitudes (client drop, server re-prune) and equal gradient magnitudes
  (regrowth) are broken by a random choice keyed by (seed, round[, client]), never by
  the position of a weight.

Differences from the authors' ``dst.py`` (kept on purpose, see the README): their client
drops a constant ``alpha`` (the annealed value only switches readjustment off once it is
0), anneals to ``rounds // 2``, readjusts at the end of its epoch count (with 10 local
epochs and ``pruning_begin = 9``: after the last epoch, so its regrown weights are
uploaded at 0), in the 0-based rounds ``1, 1 + k, ...``, takes the gradient of the last
training batch and counts ``min_votes`` in samples; regrowth here picks among the weights
inactive before the drop, so the mask moves by ``k``.
Defaults: sparsity 0.8, ``alpha = 0.01`` and ``k = 15`` as in the authors' README
(``dst.py``'s own default is ``alpha = 0.5``).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch

from ..pruning.dst import drop_and_regrow, erk_reprune
from ..pruning.erk import erk_counts, erk_random_mask
from ..pruning.schedules import CosineDrop
from ..rng import Stream, numpy_rng
from .base import COUNT_BITS, Algorithm, Channel, ClientPlan, ClientUpdate
from .merge import nnz_average


@dataclass(frozen=True)
class DropAndRegrow:
    """A client's readjustment (`ClientPlan.readjust`): `drop_and_regrow` at ``fraction``,
    ties broken by the generator keyed by (seed, TIES, round, client + 1)."""

    layout: Sequence
    prunable: torch.Tensor
    fraction: float
    key: tuple[int, int, int]  # seed, round, client

    def __call__(self, weights, gradient, mask):
        seed, rnd, client = self.key
        rng = numpy_rng(seed, Stream.TIES, rnd, client + 1)
        return drop_and_regrow(
            weights, gradient, mask, self.layout, self.prunable, self.fraction, rng
        )


class FedDST(Algorithm):
    """ERK-sparse training with client-side drop-and-regrow and holder-averaged merging."""

    name = "feddst"
    prunes = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config.algorithm.feddst
        self.cfg = cfg
        self.drop = CosineDrop(
            alpha=cfg.alpha, t_end=cfg.decay_end or self.config.federation.rounds
        )
        channels = {"kept_weight": Channel(), "kept_share": Channel()}
        if cfg.min_votes > 0:
            channels["votes"] = Channel(COUNT_BITS, weighted=False)
        self.channels = channels
        self.counts = erk_counts(self.layout, self.prunable, 1.0 - cfg.sparsity)

    def readjusts(self, round_index: int) -> bool:
        """Whether clients drop and regrow in this round (and the server re-prunes)."""
        k = self.cfg.readjust_interval
        return k > 0 and round_index % k == 0 and self.fraction(round_index) > 0

    def fraction(self, round_index: int) -> float:
        """The cosine-annealed readjustment ratio ``alpha_t`` of a round."""
        return self.drop(round_index)

    def initial_mask(self, *, weights, gradient=None, train=None, exploration=None):
        rng = numpy_rng(self.config.runtime.seed, Stream.MASK, 0)
        mask = erk_random_mask(self.layout, self.prunable, 1.0 - self.cfg.sparsity, rng)
        return self.sparse_start_(weights, mask)

    # ------------------------------------------------------------- client side
    def plan_client(self, *, ctx, model, client, state=None) -> ClientPlan:
        """Train under the global mask; in readjustment rounds drop and regrow before the
        last local epoch (alone, not in a group)."""
        if not self.readjusts(ctx.round):
            return ClientPlan(train_mask=model.mask)
        rule = DropAndRegrow(
            self.layout, self.prunable, self.fraction(ctx.round), (ctx.seed, ctx.round, client)
        )
        return ClientPlan(train_mask=model.mask, readjust=rule, groupable=False)

    def finish_client(self, *, ctx, model, client, plan, local, gradient=None, state=None):
        """Send values over the client's mask; after a readjustment the mask travels too."""
        mask = plan.train_mask  # after the readjustment: the client's own new mask
        own = mask if plan.readjust is not None else None
        channels = {"kept_weight": local.double() * mask, "kept_share": mask.double()}
        if "votes" in self.channels:
            channels["votes"] = mask.double()
        return ClientUpdate(
            message=local,
            support=mask,
            shared_support=True,
            channels=channels,
            side=(own,) if own is not None else (),
            client_mask=own,
        )

    # ------------------------------------------------------------- server side
    def aggregate(self, *, ctx, sums, model, server):
        """Each weight's sample-weighted mean over the clients that hold it."""
        return nnz_average(sums["kept_weight"], sums["kept_share"]).to(torch.float32)

    def keeps_old_mask(self, ctx) -> bool:
        return False  # the server's mask is always the one `server_prune` gives

    def server_prune(self, *, ctx, weights, sums, old):
        """Readjustment rounds: each layer back to its ERK count by magnitude."""
        if not self.readjusts(ctx.round):
            return old
        mean = nnz_average(sums["kept_weight"], sums["kept_share"])  # float64, as scored
        if "votes" in sums:
            eligible = sums["votes"] > self.cfg.min_votes
        else:
            eligible = sums["kept_share"] > 0
        rng = numpy_rng(ctx.seed, Stream.TIES, ctx.round, 0)  # ties: keyed, not by position
        return erk_reprune(mean, eligible, self.layout, self.prunable, self.counts, rng)
