"""FedDIP: dynamic pruning with error feedback and incremental regularisation (docs/methods.md).

Rounds count from 1 here; the paper's ``t`` is ``round - 1``.

- Server: in rounds 1, 1 + k, 1 + 2k, ... (``k = reconfig_interval``) a global magnitude
  mask on the aggregate at the cubic schedule's sparsity (``s_0`` in round 1, ``s_T`` at
  ``end_round``); in every round the aggregate is multiplied by the mask in force.
  ``nested`` (the authors' code): the old mask is applied before re-pruning, so each mask
  is a subset of the last. ``free`` (DPF): the unmasked aggregate of dense uploads is
  pruned, so a weight pruned earlier can come back.
- Clients: error feedback (``forward_mask``): forward and backward on ``w * M``, the step
  on the dense ``w``; plus ``lambda_t * sum_l ||(w * M)_l||_2`` over the prunable layers
  with FedDIP's staircase ``lambda_t``, and the optimiser's weight decay on the dense
  ``w``. Round 1 (no global mask yet): each client its own random ERK mask at density
  ``1 - s_0``, keyed by (seed, round, client).
- Upload: ``masked`` sends ``w * M``; the server holds ``M`` (round 1: draws it from the
  client's key), so values travel without positions. ``dense`` sends every weight, as the
  authors' code does.
- Round 1 with masked uploads: every client holds its own random mask, so a weight is
  averaged over the clients that hold it (``sum p_c m_c w_c / sum p_c m_c``, the channels
  ``kept_weight`` and ``kept_share`` in round 1 only); a weight no client held keeps its
  value. Averaging with the zeros of the clients that do not hold a weight would make the
  first magnitude cut count how many random masks held it.
- Modes: ``feddip``; ``feddp`` (no penalty); ``reg_only`` (FedDIP's penalty, no pruning:
  plain FedAvg otherwise; the authors' ``sFL`` uses a constant lambda_max over all
  parameters instead). ``algorithm.name=fedavg`` is the remaining ablation.
"""

from __future__ import annotations

import torch

from ..errors import InputError
from ..pruning.erk import erk_random_mask
from ..pruning.magnitude import global_magnitude_mask
from ..pruning.penalty import NormPenalty, layer_slices
from ..pruning.schedules import Cubic, FedDIPLambda
from ..rng import Stream, numpy_rng
from .base import Algorithm, Channel, ClientPlan, ClientUpdate, Difference, RoundContext


class FedDIP(Algorithm):
    """FedDIP and its FedDP / regularisation-only ablations."""

    name = "feddip"
    prunes = True

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config.algorithm.feddip
        self.cfg = cfg
        self.prunes = cfg.mode != "reg_only"
        self.penalised = cfg.mode != "feddp"
        if self.prunes and cfg.regrowth == "free" and cfg.upload == "masked":
            raise InputError(
                "algorithm.feddip.regrowth=free prunes the unmasked aggregate, so it needs "
                "algorithm.feddip.upload=dense"
            )
        # Masked uploads: w * M - w_global is zero outside M, so rank sums travel over M.
        self.channels_within_mask = self.prunes and cfg.upload == "masked"
        rounds = self.config.federation.rounds
        self.schedule = feddip_schedule(cfg, rounds)
        self.lambdas = FedDIPLambda(T=rounds, lambda_max=cfg.lambda_max)
        self.slices = layer_slices(self.layout, self.prunable) if self.penalised else ()
        # Round 1's holder average (masked uploads under each client's own mask).
        self.holder_average = self.prunes and cfg.upload == "masked"
        if self.holder_average:
            self.channels = {"delta": Channel(), "kept_weight": Channel(), "kept_share": Channel()}

    def first_round(self, ctx: RoundContext) -> bool:
        """Round 1 with each client's own mask and the holder average."""
        return self.holder_average and ctx.round == 1

    def round_channels(self, ctx: RoundContext):
        """Round 1: the holder average's two channels; later rounds: the mean update."""
        if self.first_round(ctx):
            return {"kept_weight": Channel(), "kept_share": Channel()}
        return {"delta": Channel()}

    def reconfigures(self, round_index: int) -> bool:
        """Whether the server re-prunes after this round (the paper's ``t mod k == 0``)."""
        return (round_index - 1) % self.cfg.reconfig_interval == 0

    def coefficient(self, round_index: int) -> float:
        """The penalty coefficient of a round (0 in FedDP mode)."""
        return self.lambdas(round_index - 1) if self.penalised else 0.0

    def sparsity_reached(self, rounds: int) -> tuple[float, float] | None:
        """The schedule's sparsity at the last re-pruning round up to ``rounds``, and s_T."""
        if not self.prunes:
            return None
        last = 1 + self.cfg.reconfig_interval * ((rounds - 1) // self.cfg.reconfig_interval)
        return self.schedule(last - 1), self.cfg.s_T

    # ------------------------------------------------------------- client side
    def client_mask(self, ctx: RoundContext, model, client: int) -> torch.Tensor | None:
        """The mask a client trains under: the global one, or round 1's own ERK draw."""
        if not self.prunes:
            return None
        return model.mask if model.mask is not None else self.first_mask(ctx, client)

    def first_mask(self, ctx: RoundContext, client: int) -> torch.Tensor:
        """A client's own random ERK mask at density ``1 - s_0`` (before the first global mask)."""
        rng = numpy_rng(ctx.seed, Stream.MASK, ctx.round, client)
        return erk_random_mask(self.layout, self.prunable, 1.0 - self.cfg.s_0, rng)

    def plan_client(self, *, ctx, model, client, state=None) -> ClientPlan:
        """Error feedback under the client's mask (no projection), plus the norm penalty."""
        lam = self.coefficient(ctx.round)
        return ClientPlan(
            forward_mask=self.client_mask(ctx, model, client),
            # Under the forward mask the penalty is on the masked weights w * M.
            penalty=NormPenalty(self.slices, lam) if lam != 0 and self.slices else None,
        )

    def finish_client(self, *, ctx, model, client, plan, local, gradient=None, state=None):
        """Masked upload: zero the masked coordinates, send values over the mask."""
        mask = plan.forward_mask
        masked = mask is not None and self.cfg.upload == "masked"
        if masked:
            local.mul_(mask)
        if self.first_round(ctx) and model.mask is None:
            channels = {"kept_weight": local.double(), "kept_share": mask.double()}
        else:
            channels = {"delta": Difference(local, model.weights)}
        return ClientUpdate(
            message=local,
            support=mask if masked else None,
            shared_support=masked,
            channels=channels,
            # Round 1's own random masks are recorded; later ones are the global mask.
            client_mask=mask if model.mask is None else None,
        )

    # ------------------------------------------------------------- server side
    def server_step(self, *, ctx, sums, model, server):
        result = super().server_step(ctx=ctx, sums=sums, model=model, server=server)
        result.metrics["penalty_lambda"] = self.coefficient(ctx.round)
        return result

    def aggregate(self, *, ctx, sums, model, server):
        """Round 1: each weight's mean over the clients holding it; then FedAvg(M)."""
        if "kept_share" not in sums:
            return super().aggregate(ctx=ctx, sums=sums, model=model, server=server)
        held = sums["kept_share"] > 0
        start = model.weights.double()
        mean = start.clone()
        mean[held] = sums["kept_weight"][held] / sums["kept_share"][held]
        return self.apply_update(server, model.weights, mean - start)

    def keeps_old_mask(self, ctx: RoundContext) -> bool:
        """Nested masks apply the old one first; free regrowth prunes the unmasked aggregate."""
        return self.cfg.regrowth == "nested" or not self.reconfigures(ctx.round)

    def server_prune(self, *, ctx, weights, sums, old):
        """Every ``reconfig_interval`` rounds: global magnitude at the cubic schedule's sparsity."""
        if not self.prunes or not self.reconfigures(ctx.round):
            return old
        nested = self.cfg.regrowth == "nested"
        return global_magnitude_mask(
            weights,
            self.prunable,
            self.schedule(ctx.round - 1),
            current_mask=old if nested else None,
        )


def feddip_schedule(cfg, rounds: int) -> Cubic:
    """The cubic sparsity schedule over the paper's ``t = round - 1``.

    It reaches ``s_T`` at ``end_round``; by default the run's last re-pruning round
    (``1 + k * floor((rounds - 1) / k)``), so the final mask is at ``s_T`` whatever the
    number of rounds. ``end_round = rounds + 1`` gives the authors' ``(1 - t / T) ** 3``.
    """
    k = cfg.reconfig_interval
    end = cfg.end_round or 1 + k * ((rounds - 1) // k)
    return Cubic(t0=0, s_i=cfg.s_0, s_f=cfg.s_T, t_end=max(end - 1, 1))
