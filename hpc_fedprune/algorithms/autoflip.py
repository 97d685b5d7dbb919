"""AutoFLIP: a mask guided by a federated loss-exploration phase (ALGORITHMS.md s4).

Before round 1 the explorers train from the common start theta0
(`hpc_fedprune.exploration.phase`); rank 0 receives the mean squared displacement of every
parameter, and `initial_mask` normalises it per tensor and removes the ``floor(tau * N)``
lowest-scoring prunable entries (optionally whole units as well: ``structured``); the
global model starts as ``theta0 * M`` (not the explored weights, the authors' code's
item 2 in s4.7). Clients re-apply M after every step, so uploads travel as values over it.

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
from .base import Algorithm, Channel, ServerState

_COST = ("exploration_bytes_up", "exploration_bytes_down", "exploration_client_epochs")


class AutoFLIPServer(ServerState):
    """Rank 0's AutoFLIP state: the exploration cost, reported once with the first round."""

    def __init__(self, cost: dict[str, float]) -> None:
        super().__init__()
        self.cost = cost

    def take_cost(self) -> dict[str, float]:
        """The exploration cost the first time, zeros afterwards (and after a resume)."""
        out, self.cost = self.cost, dict.fromkeys(_COST, 0.0)
        return out


class AutoFLIP(Algorithm):
    """FedAvg with server momentum under a mask scored by exploration displacement."""

    name = "autoflip"
    prunes = True
    explores = True  # the round loop runs the exploration phase before round 1

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.cfg = self.config.algorithm.autoflip
        # Without refresh every channel is zero off the fixed mask; the refresh channel is
        # dense (pruned entries moved from theta0 to zero).
        self.channels_within_mask = not self.cfg.refresh
        if self.cfg.refresh:
            self.channels = {"delta": Channel(), "displacement": Channel()}
        self.theta0: torch.Tensor | None = None  # the common start (refresh), every rank
        if self.cfg.server_update == "ema":  # the authors' v = beta v + (1 - beta) u
            self.server_dampening = self.config.federation.server_momentum

    def cut(self, scores: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The mask from raw scores, and the normalised scores behind it."""
        return guidance_mask(
            scores,
            self.layout,
            self.prunable,
            self.cfg.tau,
            normalisation=self.cfg.normalisation,
            structured=self.cfg.structured,
        )

    def initial_mask(self, *, weights, gradient=None, train=None, exploration=None):
        """The cut of the exploration scores (rank 0; other ranks receive its mask)."""
        self.theta0 = weights.clone()
        if exploration is None or exploration.scores is None:
            # Other ranks, or a resumed run: rank 0's mask / the checkpoint's wins.
            return torch.ones(weights.numel(), dtype=torch.bool, device=weights.device)
        return self.cut(exploration.scores.to(weights.device))[0]

    def new_server(self, *, weights, mask, exploration=None) -> AutoFLIPServer:
        cost = dict.fromkeys(_COST, 0.0)
        if exploration is not None:
            cost = {
                "exploration_bytes_up": float(exploration.bytes_up),
                "exploration_bytes_down": float(exploration.bytes_down),
                "exploration_client_epochs": float(exploration.client_epochs),
            }
        return AutoFLIPServer(cost)

    # ------------------------------------------------------------- client side
    def finish_client(self, *, ctx, model, client, plan, local, gradient=None, state=None):
        update = super().finish_client(ctx=ctx, model=model, client=client, plan=plan, local=local)
        if self.cfg.refresh:
            disp = squared_displacement(local, self.theta0).mul_(self.prunable)
            update.channels["displacement"] = disp
        return update

    # ------------------------------------------------------------- server side
    def server_step(self, *, ctx, sums, model, server):
        result = super().server_step(ctx=ctx, sums=sums, model=model, server=server)
        result.metrics.update(server.take_cost())
        return result

    def keeps_old_mask(self, ctx) -> bool:
        return not self.cfg.refresh  # a refreshed mask replaces the old one

    def server_prune(self, *, ctx, weights, sums, old):
        return self.cut(sums["displacement"])[0] if self.cfg.refresh else old

    def exploration_record(self, exploration) -> dict:
        """Rank 0: what the run file keeps under ``/exploration`` (see the README)."""
        e, cfg = exploration, self.cfg
        normalised = self.cut(e.scores)[1]
        return {
            "datasets": {
                "clients": np.asarray(e.clients, dtype=np.int64),
                "epochs": np.asarray(e.epochs, dtype=np.int64),
                "scores": normalised.cpu().numpy().astype(np.float32),
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
