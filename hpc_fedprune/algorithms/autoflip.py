"""AutoFLIP: a mask guided by a federated loss-exploration phase (docs/methods.md).

Before round 1 the explorers train from the common start theta0
(`hpc_fedprune.exploration.phase`); rank 0 receives the mean squared displacement of every
parameter, and `initial_mask` normalises it per tensor and removes the ``floor(tau * N)``
lowest-scoring prunable entries (optionally whole units as well: ``structured``); the
global model starts as ``theta0 * M`` (not the explored weights, where the authors' code
starts). Clients re-apply M after every step, so uploads travel as values over it.

Server step (``server_update: ema``, the authors' code): ``v = beta v + (1 - beta) u``,
``w = w + server_lr v`` with ``u`` the sample-weighted mean update and ``beta =
federation.server_momentum``. This equals the base class's FedAvgM (``v = beta v + u``)
with the server learning rate scaled by ``1 - beta``; ``server_update: fedavgm`` uses that.

``structured`` (hybrid): the layers whose units can really go (`pruning.units`) lose the
``floor(tau U)`` units of lowest mean score, each with its incoming weights, bias, norm
scale and shift and the next layer's input columns; the element cut then removes
``floor(tau N)`` of the entries left. ``units_removed`` and ``unit_params_removed`` (per
round, and in ``/exploration``) count the units the mask removes whole.

``refresh``: every round the server rescores from what the sampled clients trained in
the round, ``sum_k p_k (w_k - w_t)**2`` with ``w_t`` the downloaded global model
(computed from what each client sent, so no extra bytes, and zero off the mask), and
re-cuts the mask the same way. A pruned weight did not train, so it scores 0: uploads at
0 must not count as movement from theta0 (that made every pruned weight look like the
most important one). Among equal scores the entries already pruned go first, so a
refresh moves the mask only where a kept weight scores below what it replaces.
"""

from __future__ import annotations

import numpy as np
import torch

from ..errors import InputError
from ..pruning.exploration import guidance_mask, removed_units, squared_displacement
from ..pruning.units import unit_layers
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

    channels_within_mask = True  # clients train under the mask; movement is zero off it

    def __init__(self, config, prunable, trainable, layout=(), module=None) -> None:
        super().__init__(config, prunable, trainable, layout, module)
        self.cfg = self.config.algorithm.autoflip
        if self.cfg.refresh:
            self.channels = {"delta": Channel(), "displacement": Channel()}
        if self.cfg.server_update == "ema":  # the authors' v = beta v + (1 - beta) u
            self.server_dampening = self.config.federation.server_momentum
        self.units = ()
        if self.cfg.structured:
            if module is None:
                raise InputError("algorithm.autoflip.structured needs the network's graph")
            # Only layers whose whole removal stays inside the prunable set.
            self.units = tuple(
                u
                for u in unit_layers(module, self.layout)
                if all(bool(self.prunable[t.slice].all()) for t in u.tensors())
            )

    def cut(self, scores: torch.Tensor, old: torch.Tensor | None = None):
        """The mask from raw scores, and the normalised scores behind it."""
        return guidance_mask(
            scores,
            self.layout,
            self.prunable,
            self.cfg.tau,
            normalisation=self.cfg.normalisation,
            units=self.units,
            old=old,
        )

    def structure(self, mask: torch.Tensor) -> dict[str, float]:
        """Hybrid: units the mask removes whole and the parameters removed with them."""
        if not self.cfg.structured:
            return {}
        units, params = removed_units(mask, self.units)
        return {"units_removed": float(units), "unit_params_removed": float(params)}

    def initial_mask(self, *, weights, gradient=None, train=None, exploration=None):
        """The cut of the exploration scores (rank 0; other ranks receive its mask)."""
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
        if self.cfg.refresh:  # what the client trained this round (0 where it is pruned)
            disp = squared_displacement(local, model.weights).mul_(self.prunable)
            update.channels["displacement"] = disp
        return update

    # ------------------------------------------------------------- server side
    def server_step(self, *, ctx, sums, model, server):
        result = super().server_step(ctx=ctx, sums=sums, model=model, server=server)
        result.metrics.update(server.take_cost())
        result.metrics.update(self.structure(result.model.mask))
        return result

    def keeps_old_mask(self, ctx) -> bool:
        return not self.cfg.refresh  # a refreshed mask replaces the old one

    def server_prune(self, *, ctx, weights, sums, old):
        return self.cut(sums["displacement"], old)[0] if self.cfg.refresh else old

    def exploration_record(self, exploration) -> dict:
        """Rank 0: what the run file keeps under ``/exploration`` (see the README)."""
        e, cfg = exploration, self.cfg
        mask, normalised = self.cut(e.scores)
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
                "reference": cfg.reference,
                **{k: int(v) for k, v in self.structure(mask).items()},
            },
        }
