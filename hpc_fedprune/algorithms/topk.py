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
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..pruning.topk import keep_count, topk_step, warmup_density
from .base import Algorithm, GlobalModel, RoundContext, Upload


class TopK(Algorithm):
    """Top-k sparsified uploads with per-client error feedback."""

    name = "topk"
    prunes = False

    def __init__(self, config, prunable, trainable) -> None:
        super().__init__(config, prunable, trainable)
        cfg = config.algorithm.topk
        if cfg.momentum > 0 and not cfg.error_feedback:
            raise InputError(
                "algorithm.topk.momentum needs algorithm.topk.error_feedback: true "
                "(momentum correction accumulates into the residual)"
            )
        self.cfg = cfg
        n = prunable.numel()
        arrays = {}
        if cfg.error_feedback:
            arrays["residual"] = (np.float32, n)
        if cfg.momentum > 0:
            arrays["momentum"] = (np.float32, n)
        self.client_state_arrays = arrays
        self._state: dict[str, torch.Tensor | None] = {}
        self._sent: tuple[torch.Tensor, torch.Tensor] | None = None
        self._density = cfg.density

    def density(self, round_index: int) -> float:
        """The fraction of entries each client sends in ``round_index`` (after warm-up)."""
        return warmup_density(round_index, self.cfg.density, self.cfg.warmup_rounds)

    # ------------------------------------------------------------- client side
    def load_client_state(self, client: int, state) -> None:
        device = self.prunable.device
        state = state or {}
        self._state = {
            name: (torch.from_numpy(state[name]).to(device) if name in state else None)
            for name in self.client_state_arrays
        }

    def finish_local(self, ctx: RoundContext, model: GlobalModel, local: torch.Tensor, client):
        """Select and round the message from the unrounded local weights; keep the rest."""
        update = local - model.weights
        residual = None
        if self.cfg.error_feedback:
            residual = self._state.get("residual")
            residual = torch.zeros_like(update) if residual is None else residual
        sent, support, residual, momentum = topk_step(
            update,
            residual,
            self._state.get("momentum"),
            keep_count(update.numel(), self.density(ctx.round)),
            beta=self.cfg.momentum,
            value_dtype=self.config.comm.value_dtype,
        )
        self._state = {"residual": residual, "momentum": momentum}
        self._sent = (sent, support)
        return None

    def upload(self, ctx, model, local, local_mask, samples) -> Upload:
        """The sent vector with its own positions; the server sums ``p_c * sent``."""
        sent, support = self._sent
        self._sent = None
        weight = samples / ctx.cohort_samples
        return Upload(message=sent, support=support, channels={"delta": sent.double() * weight})

    def client_state(self, client: int) -> dict[str, np.ndarray]:
        return {
            name: self._state[name].cpu().numpy()
            for name in self.client_state_arrays
            if self._state.get(name) is not None
        }

    # ------------------------------------------------------------- server side
    def server_step(self, ctx, sums, model) -> GlobalModel:
        """FedAvg's step on the weighted mean of the sent vectors (no mask)."""
        self._density = self.density(ctx.round)  # for metrics(), on rank 0 every round
        return GlobalModel(self.apply_update(model.weights, sums["delta"], None), None)

    def metrics(self) -> dict[str, float]:
        return {"upload_density": float(self._density)}
