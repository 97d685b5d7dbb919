"""PruneFL: adaptive pruning from aggregated squared gradients (Jiang et al., TNNLS 2022;
docs/methods.md, PruneFL).

- Initial pruning (before round 1, `initial_mask`): one client, drawn from
  ``numpy_rng(seed, Stream.MASK, 0)``, trains ``init_rounds`` times from the initial
  weights (local training keyed by round 0 and the pass); after pass ``i`` it keeps the
  weights with the largest squared gradient (one batch of a permutation from the same
  generator) at sparsity ``initial_sparsity * i / init_rounds``. With ``init_rounds = 0``
  one gradient at the initial weights gives the mask at ``initial_sparsity``. Its
  weights and mask start the federation (every rank computes them; rank 0's are broadcast).
- Rounds: FedAvg under the mask (clients re-apply it after every step; values travel over
  it). In rounds ``k, 2k, ...`` (``k = reconfig_interval``) every client also sends the
  loss gradient at its trained weights on one batch, dense over the prunable set; the
  server sums ``p_c g_c^2`` exactly and keeps the prunable weights with the largest
  ``G / t`` (``t``: the tensor's per-parameter time from ``layer_times``, 1 without) at
  the cubic schedule's sparsity, from ``initial_sparsity`` to ``final_sparsity`` at
  ``end_round`` (default the last reconfiguration). The choice ignores the old mask:
  pruned weights come back (at value 0).

Simplifications (documented in the README): one batch's gradient at the end of local
training stands for PruneFL's squared gradients accumulated over the local iterations,
the kept count follows the cubic schedule instead of PruneFL's time-optimal search, and
the layer-time model is a user-given per-parameter time per tensor (as the FedDST
authors' port hard-codes measured times) rather than a measurement.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..pruning.importance import importance_mask, layer_time_vector
from ..pruning.schedules import Cubic
from ..rng import Stream, numpy_rng
from .base import Algorithm, Channel, ClientPlan, GradientFn, TrainFn

# Squared gradients can be large: 32 fractional bits (resolution 2**-32) leave an integer
# range of 2**30 / cohort for one client's p_c * g^2, far above any gradient that trains.
SQ_GRAD_BITS = 32


class PruneFL(Algorithm):
    """FedAvg under a mask re-selected from aggregated squared gradients."""

    name = "prunefl"
    prunes = True
    channels = {"delta": Channel(), "sq_grad": Channel(SQ_GRAD_BITS)}

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config.algorithm.prunefl
        self.cfg = cfg
        k, rounds = cfg.reconfig_interval, self.config.federation.rounds
        end = cfg.end_round or max(k * (rounds // k), 1)
        self.schedule = Cubic(
            t0=0, s_i=cfg.initial_sparsity, s_f=cfg.final_sparsity, t_end=max(end, 1)
        )
        self.time = layer_time_vector(self.layout, self.prunable, cfg.layer_times)

    def reconfigures(self, round_index: int) -> bool:
        """Whether the server re-selects the kept weights after this round."""
        return round_index % self.cfg.reconfig_interval == 0

    def sparsity_reached(self, rounds: int) -> tuple[float, float]:
        """The schedule's sparsity at the last reconfiguration up to ``rounds`` (the
        initial pruning's without one), and final_sparsity."""
        last = self.cfg.reconfig_interval * (rounds // self.cfg.reconfig_interval)
        reached = self.schedule(last) if last >= 1 else self.cfg.initial_sparsity
        return reached, self.cfg.final_sparsity

    def select(self, sq_grad: torch.Tensor, sparsity: float) -> torch.Tensor:
        """The kept weights: the largest ``sq_grad / time`` at ``sparsity``."""
        return importance_mask(sq_grad, self.prunable, sparsity, self.time)

    def initial_client(self) -> tuple[int, object]:
        """The client of the initial pruning and the generator of its batches (seeded)."""
        rng = numpy_rng(self.config.runtime.seed, Stream.MASK, 0)
        return int(rng.integers(self.config.partition.num_clients)), rng

    def initial_mask(
        self,
        *,
        weights: torch.Tensor,
        gradient: GradientFn | None = None,
        train: TrainFn | None = None,
        exploration=None,
    ) -> torch.Tensor:
        """Initial pruning on one seeded client; trains ``weights`` in place."""
        if gradient is None or (train is None and self.cfg.init_rounds > 0):
            raise InputError("prunefl's initial pruning needs local training and gradients")
        client, rng = self.initial_client()
        passes = self.cfg.init_rounds
        mask = None
        for i in range(1, passes + 1):
            train(client, i, weights, mask)
            sparsity = self.cfg.initial_sparsity * i / passes
            mask = self.select(gradient(client, rng).to(weights.device) ** 2, sparsity)
            weights.mul_(mask)
        if mask is None:  # no training: one gradient at the initial weights
            grad = gradient(client, rng).to(weights.device)
            mask = self.select(grad**2, self.cfg.initial_sparsity)
        return mask

    # ------------------------------------------------------------- client side
    def plan_client(self, *, ctx, model, client, state=None) -> ClientPlan:
        return ClientPlan(train_mask=model.mask, needs_gradient=self.reconfigures(ctx.round))

    def finish_client(self, *, ctx, model, client, plan, local, gradient=None, state=None):
        """Reconfiguration rounds: also send the gradient over the prunable set."""
        update = super().finish_client(ctx=ctx, model=model, client=client, plan=plan, local=local)
        if gradient is not None:
            grad = gradient * self.prunable  # only the prunable entries travel
            update.channels["sq_grad"] = grad.double().square()
            update.side = (grad,)
        return update

    # ------------------------------------------------------------- server side
    def server_prune(self, *, ctx, weights, sums, old):
        """Every ``reconfig_interval`` rounds: the largest aggregated ``g^2 / time``.

        The old mask plays no part in the choice (it zeroed the aggregate before), so a
        pruned weight can come back, at 0.
        """
        if not self.reconfigures(ctx.round):
            return old
        return self.select(sums["sq_grad"], self.schedule(ctx.round))
