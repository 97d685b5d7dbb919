"""FedSparsify: progressive magnitude pruning during federated training (ALGORITHMS.md s3).

Global: clients train under the global mask; the server merges, prunes the merged model
by global magnitude to the scheduled sparsity, and the new mask is its non-zero pattern.
Local: each client purges its own model to the scheduled sparsity after training and
sends values with their positions; the server merges (majority vote by default).
Masks never regrow: every new mask is nested in the last (``current_mask``).
"""

from __future__ import annotations

import torch

from ..pruning.magnitude import global_magnitude_mask
from ..pruning.masks import nonzero_mask
from ..pruning.schedules import Constant, Cubic, Multiplicative
from . import merge
from .base import COUNT_BITS, REAL_BITS, Algorithm, GlobalModel, RoundContext, Upload


class FedSparsify(Algorithm):
    """FedSparsify-Global and -Local with the four merge operators."""

    name = "fedsparsify"
    prunes = True
    channels_within_mask = True  # local models live under the global mask (no regrowth)

    def __init__(self, config, prunable, trainable) -> None:
        super().__init__(config, prunable, trainable)
        cfg = config.algorithm.fedsparsify
        self.cfg = cfg
        self.local = cfg.variant == "local"
        self.merge_rule = (
            cfg.merge if cfg.merge != "auto" else ("majority_vote" if self.local else "fedavg")
        )
        self.schedule = make_schedule(cfg, config.federation.rounds)
        bits = {"delta": REAL_BITS}
        if self.merge_rule in ("nnz_average", "majority_vote_nnz"):
            bits |= {"kept_weight": REAL_BITS, "kept_share": REAL_BITS}
        if self.merge_rule in ("majority_vote", "majority_vote_nnz"):
            bits["votes"] = COUNT_BITS
        self.channel_bits = bits

    def prunes_in(self, round_index: int) -> bool:
        """Pruning happens after the start round t0 (the first pruned round is t0 + 1)."""
        return round_index > self.cfg.start_round

    # ------------------------------------------------------------- client side
    def finish_local(self, ctx: RoundContext, model: GlobalModel, local: torch.Tensor, client: int):
        """Local purge: the client prunes its own (masked) model to the round's sparsity."""
        if not (self.local and self.prunes_in(ctx.round)):
            return model.mask
        own = global_magnitude_mask(
            local, self.prunable, self.schedule(ctx.round), current_mask=model.mask
        )
        local.mul_(own)
        return own

    def upload(self, ctx, model, local, local_mask, samples) -> Upload:
        weight = samples / ctx.cohort_samples
        local64 = local.double()
        channels = {"delta": (local64 - model.weights.double()) * weight}
        kept = local_mask if local_mask is not None else torch.ones_like(self.prunable)
        if "kept_share" in self.channel_bits:
            share = kept.double() * weight
            channels["kept_weight"] = local64 * share
            channels["kept_share"] = share
        if "votes" in self.channel_bits:
            channels["votes"] = kept.double()
        own_support = self.local and self.prunes_in(ctx.round)
        return Upload(
            message=local,
            support=local_mask,
            shared_support=not own_support and local_mask is not None,
            local_mask=local_mask if own_support else None,
            channels=channels,
        )

    # ------------------------------------------------------------- server side
    def server_step(self, ctx, sums, model) -> GlobalModel:
        rule = self.merge_rule
        if rule in ("nnz_average", "majority_vote_nnz"):
            merged = merge.nnz_average(sums["kept_weight"], sums["kept_share"])
        else:
            merged = merge.fedavg(model.weights, sums["delta"])
        keep = None
        if rule in ("majority_vote", "majority_vote_nnz"):
            keep = merge.majority_keep(sums["votes"], ctx.cohort_size, self.prunable)
        weights = merged.to(torch.float32)
        if keep is not None:
            weights.mul_(keep)
        if model.mask is not None:
            weights.mul_(model.mask)  # no regrowth
        if ctx.round < self.cfg.start_round:
            return GlobalModel(weights, None)  # dense until the round before pruning starts
        if not self.local and self.prunes_in(ctx.round):
            pruned = global_magnitude_mask(
                weights, self.prunable, self.schedule(ctx.round), current_mask=model.mask
            )
            weights.mul_(pruned)
        # The mask is the non-zero pattern of the merged model (positions outside the
        # prunable set are always kept).
        mask = nonzero_mask(weights, self.prunable)
        if model.mask is not None:
            mask &= model.mask
        return GlobalModel(weights, mask)


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
