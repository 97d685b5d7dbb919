"""Top-k sparsification with error feedback (Stich et al. 2018; DGC, Lin et al. 2018).

Each client trains densely from the global model, adds its residual (the mass it did not
send before) to its update ``w_c - w_global``, sends the k largest-magnitude entries of
the sum with their positions, and keeps the rest as its residual for its next
participation (`hpc_fedprune.pruning.topk.topk_step`). The residual is the client's
unweighted update: sample weights ``n_c / cohort samples`` apply on the server only, so a
client's unsent mass does not change value with the cohort it next lands in. The server
adds the weighted mean of the sent vectors to the global model (FedAvg's server step,
with ``federation.server_lr`` and ``server_momentum``). The model stays dense.

Options: ``momentum`` (DGC's momentum correction and factor masking, a second per-client
buffer ``u``) and ``warmup_rounds`` (DGC's exponential density warm-up). The message is
rounded to ``comm.value_dtype`` before the residual is taken, so residual plus sent is
exactly the accumulated update.

Only trainable parameters are selected and error-fed: ``k`` counts them, and the residual
and momentum are zero elsewhere. Buffers (BatchNorm running statistics) are not gradients
to compress: their change travels whole beside the selection (a side vector of values,
counted in the uplink bytes) and the server averages it as FedAvg does.
"""

from __future__ import annotations

import numpy as np
import torch

from ..comm.wire import round_to_wire_
from ..errors import InputError
from ..pruning.topk import keep_count, topk_step, warmup_density
from .base import Algorithm, ClientPlan, ClientUpdate


class TopK(Algorithm):
    """Top-k sparsified uploads with per-client error feedback."""

    name = "topk"
    prunes = False
    # The message is a selection of the accumulated update, not the trained weights: the
    # update is taken from the unrounded weights and `topk_step` rounds what it sends.
    sends_weights = False

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        cfg = self.config.algorithm.topk
        if cfg.momentum > 0 and not cfg.error_feedback:
            raise InputError(
                "algorithm.topk.momentum needs algorithm.topk.error_feedback: true "
                "(momentum correction accumulates into the residual)"
            )
        self.cfg = cfg
        n = self.prunable.numel()
        arrays = {}
        if cfg.error_feedback:
            arrays["residual"] = (np.float32, n)
        if cfg.momentum > 0:
            arrays["momentum"] = (np.float32, n)
        self.client_state_arrays = arrays

    def density(self, round_index: int) -> float:
        """The fraction of entries each client sends in ``round_index`` (after warm-up)."""
        return warmup_density(round_index, self.cfg.density, self.cfg.warmup_rounds)

    # ------------------------------------------------------------- client side
    def plan_client(self, *, ctx, model, client, state=None) -> ClientPlan:
        return ClientPlan()  # dense local training

    def finish_client(self, *, ctx, model, client, plan, local, gradient=None, state=None):
        """The k largest entries of update + residual, with their positions; keep the rest."""
        device = local.device
        held = {
            name: torch.from_numpy(state[name]).to(device)
            for name in self.client_state_arrays
            if state is not None and name in state
        }
        update = local - model.weights
        residual = None
        if self.cfg.error_feedback:
            residual = held.get("residual")
            residual = torch.zeros_like(update) if residual is None else residual
        trained = self.trainable
        every = bool(trained.all())
        part = (lambda v: v) if every else (lambda v: None if v is None else v[trained])
        sent, support, residual, momentum = topk_step(
            part(update),
            part(residual),
            part(held.get("momentum")),
            keep_count(int(trained.sum()), self.density(ctx.round)),
            beta=self.cfg.momentum,
            value_dtype=self.config.comm.value_dtype,
        )
        side, delta = (), None
        if not every:  # back to the flat layout; buffers travel whole beside the selection
            sent, support, residual, momentum = (
                None if v is None else _scatter(v, trained)
                for v in (sent, support, residual, momentum)
            )
            moved = round_to_wire_(update[~trained].clone(), self.config.comm.value_dtype)
            side = (moved,)
            delta = sent.double()
            delta[~trained] = moved.double()
        kept = {"residual": residual, "momentum": momentum}
        return ClientUpdate(
            message=sent,
            support=support,
            # The residual is unweighted: the sample weight applies on the server only, so
            # a client's unsent mass keeps its value whatever cohort it next lands in.
            channels={"delta": sent.double() if delta is None else delta},
            side=side,
            state={
                name: kept[name].cpu().numpy()
                for name in self.client_state_arrays
                if kept.get(name) is not None
            },
        )

    # ------------------------------------------------------------- server side
    def server_step(self, *, ctx, sums, model, server):
        """FedAvg's step on the weighted mean of the sent vectors (no mask)."""
        result = super().server_step(ctx=ctx, sums=sums, model=model, server=server)
        result.metrics["upload_density"] = float(self.density(ctx.round))
        return result


def _scatter(values: torch.Tensor, where: torch.Tensor) -> torch.Tensor:
    """``values`` (one per True of ``where``) placed in a zero vector as long as ``where``."""
    out = torch.zeros(where.numel(), dtype=values.dtype, device=values.device)
    out[where] = values
    return out
