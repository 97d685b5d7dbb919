"""AutoFLIP: a mask guided by a federated loss-exploration phase (ALGORITHMS.md s4).

Before round 1 the explorers train from the common start theta0
(`hpc_fedprune.exploration.phase`); rank 0 receives the mean squared displacement of every
parameter and hands it to `set_exploration`. `initial_mask` normalises it per tensor and
removes the ``floor(tau * N)`` lowest-scoring prunable entries (optionally whole units as
well: ``structured``); the global model starts as ``theta0 * M`` (not the explored
weights, the authors' code's item 2 in s4.7). Clients re-apply M after every step, so
uploads travel as values over it.

Server step (``server_update: ema``, the authors' code): ``v = beta v + (1 - beta) u``,
``w = w + server_lr v`` with ``u`` the sample-weighted mean update and ``beta =
federation.server_momentum``. This equals the base class's FedAvgM (``v = beta v + u``)
with the server learning rate scaled by ``1 - beta``; ``server_update: fedavgm`` uses that.

``refresh``: every round the server rescores from the sampled clients' displacement from
theta0, ``sum_k p_k (w_k - theta0)**2`` (computed from what each client sent, so no extra
bytes), and re-cuts the mask the same way; pruned weights may return (at zero).
"""

from __future__ import annotations

import numpy as np
import torch

from ..pruning.exploration import guidance_mask, squared_displacement
from .base import REAL_BITS, Algorithm, GlobalModel, GradientFn, RoundContext, Upload

_COST = ("exploration_bytes_up", "exploration_bytes_down", "exploration_client_epochs")


class AutoFLIP(Algorithm):
    """FedAvg with server momentum under a mask scored by exploration displacement."""

    name = "autoflip"
    prunes = True
    explores = True  # the round loop runs the exploration phase before round 1

    def __init__(self, config, prunable, trainable) -> None:
        super().__init__(config, prunable, trainable)
        self.cfg = config.algorithm.autoflip
        # Without refresh every channel is zero off the fixed mask; the refresh channel is
        # dense (pruned entries moved from theta0 to zero).
        self.channels_within_mask = not self.cfg.refresh
        if self.cfg.refresh:
            self.channel_bits = {"delta": REAL_BITS, "displacement": REAL_BITS}
        self.scores: torch.Tensor | None = None  # rank 0: raw exploration scores
        self.normalised: torch.Tensor | None = None  # rank 0: scores behind the current mask
        self.reference: torch.Tensor | None = None  # theta0 (refresh)
        self.exploration = None
        self.cost = dict.fromkeys(_COST, 0.0)  # reported once, with the first round
        if self.cfg.server_update == "ema":  # the authors' v = beta v + (1 - beta) u
            self.server_dampening = config.federation.server_momentum

    def set_exploration(self, exploration) -> None:
        """Receive the exploration phase's outcome (scores on rank 0 only) and its cost."""
        self.exploration = exploration
        self.scores = exploration.scores
        self.cost = {
            "exploration_bytes_up": float(exploration.bytes_up),
            "exploration_bytes_down": float(exploration.bytes_down),
            "exploration_client_epochs": float(exploration.client_epochs),
        }

    def _cut(self, scores: torch.Tensor) -> torch.Tensor:
        mask, self.normalised = guidance_mask(
            scores,
            self.layout,
            self.prunable,
            self.cfg.tau,
            normalisation=self.cfg.normalisation,
            structured=self.cfg.structured,
        )
        return mask

    def initial_mask(self, weights: torch.Tensor, gradient: GradientFn | None = None):
        self.reference = weights.clone()
        if self.scores is None:  # other ranks, or a resumed run: rank 0 / the checkpoint wins
            return torch.ones(weights.numel(), dtype=torch.bool, device=weights.device)
        return self._cut(self.scores.to(weights.device))

    def upload(
        self,
        ctx: RoundContext,
        model: GlobalModel,
        local: torch.Tensor,
        local_mask: torch.Tensor | None,
        samples: int,
    ) -> Upload:
        up = super().upload(ctx, model, local, local_mask, samples)
        if self.cfg.refresh:
            weight = samples / ctx.cohort_samples
            disp = squared_displacement(local, self.reference).mul_(self.prunable)
            up.channels["displacement"] = disp.mul_(weight)
        return up

    def server_step(
        self, ctx: RoundContext, sums: dict[str, torch.Tensor], model: GlobalModel
    ) -> GlobalModel:
        mask = model.mask
        if self.cfg.refresh:
            mask = self._cut(sums["displacement"])
        return GlobalModel(self.apply_update(model.weights, sums["delta"], mask), mask)

    def metrics(self) -> dict[str, float]:
        """The exploration cost in the first reported round, zero afterwards."""
        out, self.cost = self.cost, dict.fromkeys(_COST, 0.0)
        return out

    def exploration_record(self) -> dict:
        """Rank 0: what the run file keeps under ``/exploration`` (see the README)."""
        e, cfg = self.exploration, self.cfg
        return {
            "datasets": {
                "clients": np.asarray(e.clients, dtype=np.int64),
                "epochs": np.asarray(e.epochs, dtype=np.int64),
                "scores": self.normalised.cpu().numpy().astype(np.float32),
                "displacement": e.scores.cpu().numpy().astype(np.float64),
            },
            "attrs": {
                "client_epochs": int(e.client_epochs),
                "bytes_up": int(e.bytes_up),
                "bytes_down": int(e.bytes_down),
                "tau": float(cfg.tau),
                "base": cfg.base,
                "normalisation": cfg.normalisation,
                "structured": bool(cfg.structured),
            },
        }
