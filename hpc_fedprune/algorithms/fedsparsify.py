"""FedSparsify: progressive magnitude pruning during federated training.

Global: clients train under the global mask; the server merges, prunes the merged model
by global magnitude to the scheduled sparsity, and the new mask is its non-zero pattern.
Local: each client purges its own model to the scheduled sparsity after training and
sends values with their positions; the server merges (majority vote by default).
Masks never regrow: every new mask is nested in the last (``current_mask``).

Schedules: ``cubic`` and ``constant`` give a target sparsity per round; ``multiplicative``
prunes ``rate`` of the entries kept at that moment (the non-zeros of the merged model on
the server, of the global mask on a client) every ``frequency`` rounds, so what a
majority vote removed counts, up to ``final_sparsity``.
"""

from __future__ import annotations

import torch

from ..pruning.magnitude import global_magnitude_mask
from ..pruning.masks import nonzero_mask
from ..pruning.schedules import Constant, Cubic, Multiplicative
from . import merge
from .base import COUNT_BITS, Algorithm, Channel, ClientUpdate, Difference


class FedSparsify(Algorithm):
    """FedSparsify-Global and -Local with the four merge operators."""

    name = "fedsparsify"
    prunes = True
    channels_within_mask = True  # local models live under the global mask (no regrowth)

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config.algorithm.fedsparsify
        self.cfg = cfg
        self.local = cfg.variant == "local"
        self.merge_rule = (
            cfg.merge if cfg.merge != "auto" else ("majority_vote" if self.local else "fedavg")
        )
        self.schedule = make_schedule(cfg, self.config.federation.rounds)
        channels = {"delta": Channel()}
        if self.merge_rule in ("nnz_average", "majority_vote_nnz"):
            channels |= {"kept_weight": Channel(), "kept_share": Channel()}
        if self.merge_rule in ("majority_vote", "majority_vote_nnz"):
            channels["votes"] = Channel(COUNT_BITS, weighted=False)
        self.channels = channels

    def prunes_in(self, round_index: int) -> bool:
        """Pruning happens after the start round t0 (the first pruned round is t0 + 1)."""
        return round_index > self.cfg.start_round

    def sparsity_reached(self, rounds: int) -> tuple[float, float]:
        """The schedule's sparsity at round ``rounds`` (it only grows), and final_sparsity."""
        if not self.prunes_in(rounds):  # the run ends before the first pruning
            return 0.0, self.cfg.final_sparsity
        return self.schedule(rounds), self.cfg.final_sparsity

    def purge_mask(self, values, round_index: int, current):
        """Magnitude pruning of ``values`` for this round, nested in ``current``.

        ``cubic`` / ``constant``: to the scheduled sparsity. ``multiplicative``: ``rate``
        of the prunable entries ``current`` keeps now (all without a mask).
        """
        if not isinstance(self.schedule, Multiplicative):
            return global_magnitude_mask(
                values, self.prunable, self.schedule(round_index), current_mask=current
            )
        total = int(self.prunable.sum())
        kept = total if current is None else int((current & self.prunable).sum())
        count = self.schedule.pruned_after(round_index, kept, total)
        return global_magnitude_mask(values, self.prunable, count=count, current_mask=current)

    # ------------------------------------------------------------- client side
    def finish_client(self, *, ctx, model, client, plan, local, gradient=None, state=None):
        """Local variant: purge the (masked) model to the round's sparsity, send positions."""
        own = None
        if self.local and self.prunes_in(ctx.round):
            own = self.purge_mask(local, ctx.round, model.mask)
            local.mul_(own)
        kept = own if own is not None else model.mask
        channels = {"delta": Difference(local, model.weights)}
        if "kept_share" in self.channels:
            share = torch.ones_like(self.prunable) if kept is None else kept
            channels["kept_weight"] = local.double() * share
            channels["kept_share"] = share.double()
        if "votes" in self.channels:
            share = torch.ones_like(self.prunable) if kept is None else kept
            channels["votes"] = share.double()
        return ClientUpdate(
            message=local,
            support=kept,
            shared_support=own is None and kept is not None,
            channels=channels,
            client_mask=own,  # Global: clients hold the global mask, nothing to record
        )

    # ------------------------------------------------------------- server side
    def aggregate(self, *, ctx, sums, model, server):
        """The merge operator's weights, zero where the majority vote drops a position."""
        rule = self.merge_rule
        if rule in ("nnz_average", "majority_vote_nnz"):
            merged = merge.nnz_average(sums["kept_weight"], sums["kept_share"])
        else:
            merged = merge.fedavg(model.weights, sums["delta"])
        weights = merged.to(torch.float32)
        if rule in ("majority_vote", "majority_vote_nnz"):
            strict = self.cfg.vote == "strict"
            keep = merge.majority_keep(sums["votes"], ctx.cohort_size, self.prunable, strict)
            weights.mul_(keep)
        return weights

    def server_prune(self, *, ctx, weights, sums, old):
        """Global variant: magnitude pruning to the schedule; the mask is the non-zero pattern.

        Dense until the round before pruning starts; positions outside the prunable set
        are always kept; no regrowth (nested in ``old``).
        """
        if ctx.round < self.cfg.start_round:
            return None
        mask = nonzero_mask(weights, self.prunable)
        if isinstance(self.schedule, Multiplicative):
            # rate of the current non-zeros: the merge's zeros and the old mask count.
            if old is not None:
                mask &= old
            if not self.local and self.prunes_in(ctx.round):
                mask &= self.purge_mask(weights, ctx.round, mask)
            return mask
        if not self.local and self.prunes_in(ctx.round):
            mask &= global_magnitude_mask(
                weights, self.prunable, self.schedule(ctx.round), current_mask=old
            )
        if old is not None:
            mask &= old
        return mask


def make_schedule(cfg, rounds: int):
    """The sparsity schedule of the config (end round defaults to the run's last round)."""
    if cfg.schedule == "cubic":
        end = cfg.end_round or rounds
        return Cubic(
            t0=cfg.start_round,
            s_i=cfg.initial_sparsity,
            s_f=cfg.final_sparsity,
            t_end=max(end, cfg.start_round + 1),
            freq=cfg.frequency,
        )
    if cfg.schedule == "multiplicative":
        return Multiplicative(
            p=cfg.rate, freq=cfg.frequency, t0=cfg.start_round, s_max=cfg.final_sparsity
        )
    return Constant(s=cfg.final_sparsity, t0=cfg.start_round + 1)
