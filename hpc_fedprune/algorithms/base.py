"""The algorithm interface: the few points where federated methods differ.

An algorithm never sees MPI. The round loop (`hpc_fedprune.sim.loop`) calls it at fixed
points; this base class is plain FedAvg (FedAvgM with server momentum), and each method
overrides only the points where it differs. Every hook takes keyword arguments only and
returns values: per-client data travels in a `ClientPlan` (before training) and a
`ClientUpdate` (after), never in attributes of the algorithm; server state is a
`ServerState` that exists on rank 0 only, made by `new_server` and handed to
`server_step` by the loop; metrics come back with the results that produce them.

Set-up (every rank, once):
    ``__init__(config, prunable, trainable, layout)``
    ``initial_mask(weights=, gradient=, train=, exploration=)`` -> the global mask before
        round 1 (None: dense). ``gradient(client, rng)`` is the flat loss gradient at
        ``weights`` on the first batch of ``rng.permutation`` of the client's data (SNIP);
        ``train(client, key, weights, mask)`` trains a client from ``weights`` in place
        (PruneFL's initial pruning may change the initial weights); ``exploration`` is the
        outcome of the exploration phase (methods with ``explores = True``; its scores
        exist on rank 0 only). Rank 0's mask and weights are broadcast to every rank.
    ``new_server(weights=, mask=, exploration=)`` -> rank 0 only: the server's state.
Client side (every rank, once per client of the round, in this order):
    ``plan_client(ctx=, model=, client=, state=)`` -> `ClientPlan`: how the client trains
        (train mask, forward mask, penalty, whether it reports a gradient, whether it may
        train in a group). ``state`` holds the client's persistent arrays as it left them
        (None at its first participation, and for methods that declare none).
    local training, by the loop (`hpc_fedprune.training`)
    ``finish_client(ctx=, model=, client=, plan=, local=, gradient=, state=)`` ->
        `ClientUpdate`: what the client sends, the sums the server needs from it, its new
        persistent arrays and its metrics. ``plan`` is the plan as trained (after a
        ``readjust``, its ``train_mask`` is the mask the client ended with). ``local``
        is the trained flat model (the method may change it in place: a local purge);
        ``gradient`` the flat loss gradient at ``local`` on one keyed batch when the
        plan asked for it.
Server side (rank 0 only, once per round):
    ``server_step(ctx=, sums=, model=, server=)`` -> `ServerResult`: the new global model
        from the exact sums of all uploads, in three steps that methods override
        separately: ``aggregate`` (the merged weights), ``keeps_old_mask`` (whether the old
        mask zeroes them before re-pruning) and ``server_prune`` (the new mask: scheduled
        magnitude pruning, gradient reselection, ERK re-pruning, ...).

Sums: each channel a method declares in ``channels`` (``round_channels(ctx)``: the ones it
uses in a round) is summed over the cohort exactly
(int64 fixed point with the channel's fractional bits). The loop multiplies every
``weighted`` channel by the client's weight ``p_c`` (`RoundContext.client_weight`:
``n_c / sum of n over the cohort``, or ``1 / K`` with ``federation.weighting: uniform``;
once, for every method) and rounds the client's trained weights to ``comm.value_dtype``
before ``finish_client`` (``sends_weights``), so a method writes unweighted per-client
quantities of what travels.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
import torch

from ..config import Config
from ..pruning.sparse_init import rescale_kept_

# Fractional bits of the fixed-point channels (see hpc_fedprune.comm.exact): 40 for real
# values, 0 for integer counts such as majority votes.
REAL_BITS = 40
COUNT_BITS = 0

# gradient(client, rng) -> flat loss gradient on the client's first batch (`initial_mask`).
GradientFn = Callable[[int, np.random.Generator], torch.Tensor]
# train(client, key, weights, mask): local training of ``client`` from ``weights`` in place,
# under ``mask`` (None: dense), batches keyed by (seed, round 0, client, key) (`initial_mask`).
TrainFn = Callable[[int, int, torch.Tensor, "torch.Tensor | None"], None]


@dataclass(frozen=True)
class Channel:
    """A quantity every client adds to the server's exact sums.

    Attributes
    ----------
    bits : int
        Fractional bits of its fixed-point sum (`REAL_BITS` for real values,
        `COUNT_BITS` for integer counts).
    weighted : bool
        Whether the loop multiplies a client's value by its sample weight ``p_c`` before
        summing (True: the sum is a weighted mean; False: a plain sum, e.g. votes).
    """

    bits: int = REAL_BITS
    weighted: bool = True


@dataclass(frozen=True)
class Difference:
    """A channel value ``minuend - subtrahend`` that the accumulator forms in float64.

    Lets a method send ``w_c - w_global`` without building model-sized float64
    temporaries per client: the subtraction, the sample weight and the fixed-point scaling
    happen in one pass over the accumulator's own buffer.
    """

    minuend: torch.Tensor
    subtrahend: torch.Tensor


class Penalty(Protocol):
    """An extra term of the local loss, given by its closed-form gradient."""

    def add_grad_(self, params: torch.Tensor, grad: torch.Tensor, anchor: torch.Tensor) -> None:
        """Add the term's gradient at ``params`` to the flat ``grad`` in place.

        ``params`` holds the weights the forward pass saw (``w * M`` under a forward mask),
        ``anchor`` the weights the client downloaded.
        """


class Readjust(Protocol):
    """A change of a client's train mask in the middle of its local training."""

    def __call__(
        self, weights: torch.Tensor, gradient: torch.Tensor, mask: torch.Tensor
    ) -> torch.Tensor:
        """The new train mask from the current ``weights``, the loss ``gradient`` at them
        (one batch keyed by seed, round and client) and the ``mask`` in force."""


@dataclass(frozen=True)
class RoundContext:
    """Read-only facts about the current round, the same on every rank.

    Attributes
    ----------
    round : int
        1-based round index.
    rounds : int
        Rounds planned in the run.
    seed : int
        The run's seed.
    lr : float
        Client learning rate of this round (after the per-round decay).
    cohort_samples : int
        Training samples over all clients of the round (for sample weights).
    cohort_size : int
        Clients in the round.
    weighting : {'samples', 'uniform'}
        ``federation.weighting``: how `client_weight` weighs a client.
    """

    round: int
    rounds: int
    seed: int
    lr: float
    cohort_samples: int
    cohort_size: int
    weighting: str = "samples"

    def client_weight(self, samples: int) -> float:
        """A client's weight ``p_c`` in the server's averages (the weights sum to 1).

        ``samples``: ``n_c / n`` over the round's clients (FedAvg's weighting);
        ``uniform``: ``1 / K`` for the K clients of the round.
        """
        if self.weighting == "uniform":
            return 1.0 / self.cohort_size
        return samples / self.cohort_samples


@dataclass
class GlobalModel:
    """What every client downloads: flat float32 weights and the global mask (None: dense)."""

    weights: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass(frozen=True)
class ClientPlan:
    """How one client trains in this round (from `Algorithm.plan_client`).

    Attributes
    ----------
    train_mask : torch.Tensor or None
        Re-applied after every local optimiser step (projection: pruned weights stay 0).
    forward_mask : torch.Tensor or None
        Error feedback: forward and backward see ``w * M`` and the optimiser steps the
        dense ``w`` (Lin et al. 2020), so masked coordinates keep moving.
    penalty : Penalty or None
        An extra local loss term (FedProx's proximal term, FedDIP's norm penalty).
    needs_gradient : bool
        The client reports its loss gradient at the trained weights on one batch keyed
        by (seed, round, client) (``gradient`` of `Algorithm.finish_client`).
    groupable : bool
        Whether the client may train in a group of clients (``training.group_size``);
        False keeps it on the one-client-at-a-time trainer.
    readjust : Readjust or None
        Called once by the trainer before the client's last local epoch (with
        ``training.local_steps``: before the last epoch's worth of steps; with one epoch:
        before the first step) with the weights, the loss gradient at them on one batch
        keyed by (seed, round, client) and the train mask; returns the new train mask.
        Weights it removes are zeroed, the optimiser state at changed positions is
        cleared, and training goes on under the new mask, so weights it adds train before
        the upload (FedDST's regrowth). The loop hands `Algorithm.finish_client` the plan
        with ``train_mask`` set to the new mask. Such a client trains alone.
    """

    train_mask: torch.Tensor | None = None
    forward_mask: torch.Tensor | None = None
    penalty: Penalty | None = None
    needs_gradient: bool = False
    groupable: bool = True
    readjust: Readjust | None = None


@dataclass
class ClientUpdate:
    """What one client sends after training, and what it keeps (from `finish_client`).

    Attributes
    ----------
    message : torch.Tensor
        The float32 values the client sends, in dense layout (zero off the support). Its
        encoded size is the client's uplink bytes.
    support : torch.Tensor or None
        Bool positions that travel; None means every position.
    shared_support : bool
        True when the support is a mask the server already holds (the global mask, or
        one it can draw from the client's key), so the values travel without positions.
    channels : dict
        ``name -> float tensor or Difference``: the client's unweighted contribution to
        each declared `Channel`, computed from what it sent.
    side : tuple of torch.Tensor
        Further vectors sent beside the message, each encoded on its own and counted in
        bytes: a bool tensor as a mask (FedDST's client mask), a float tensor as values
        (PruneFL's gradient).
    client_mask : torch.Tensor or None
        The client's own mask, recorded in the run file (``/clients/masks``) where it
        carries information the global mask does not.
    state : dict or None
        The client's new persistent arrays (``client_state_arrays``), kept until its
        next participation.
    metrics : dict
        Per-client numbers; the loop reports their sample-weighted mean over the round's
        clients in ``/metrics``.
    """

    message: torch.Tensor
    support: torch.Tensor | None = None
    shared_support: bool = False
    channels: dict[str, torch.Tensor | Difference] = field(default_factory=dict)
    side: tuple[torch.Tensor, ...] = ()
    client_mask: torch.Tensor | None = None
    state: dict[str, np.ndarray] | None = None
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class ServerResult:
    """The server's new global model and the round's method metrics."""

    model: GlobalModel
    metrics: dict[str, float] = field(default_factory=dict)


class ServerState:
    """What the server keeps between rounds, on rank 0 only: the server momentum buffer.

    Methods with more server state subclass it and extend `state_dict` and
    `load_state_dict`, which carry it through checkpoints.
    """

    def __init__(self) -> None:
        self.momentum: torch.Tensor | None = None

    def state_dict(self) -> dict[str, torch.Tensor | None]:
        """Arrays for the checkpoint (moved to the CPU); None entries are not stored."""
        return {"momentum": None if self.momentum is None else self.momentum.cpu()}

    def load_state_dict(self, state: Mapping[str, torch.Tensor], device) -> None:
        """Restore from a checkpoint's arrays (missing names mean None)."""
        m = state.get("momentum")
        self.momentum = None if m is None else m.to(device)


class Algorithm:
    """Federated averaging (FedAvg, and FedAvgM with ``federation.server_momentum``).

    Parameters
    ----------
    config : Config
        The resolved run config.
    prunable : torch.Tensor
        Bool vector over the flat model: the positions a pruning method may remove.
    trainable : torch.Tensor
        Bool vector over the flat model: parameters (True) versus buffers (False).
    layout : sequence of TensorInfo
        The flat model's tensors (``FlatModel.layout``), for per-tensor work (ERK masks,
        per-layer penalties).
    module : torch.nn.Module, optional
        The network itself, for methods that need its graph (AutoFLIP's structured
        pruning: which layer reads which); never trained or run here.
    """

    name = "fedavg"
    prunes = False  # whether the method keeps a global mask (and writes /masks)
    channels: Mapping[str, Channel] = {"delta": Channel()}  # what each client adds to the sums
    # True when every channel is zero outside the global mask (clients train under it and
    # send nothing else), so the ranks' sums travel as values over the mask, no indices.
    channels_within_mask = False
    # True when the loop runs the exploration phase before round 1 (`initial_mask` then
    # receives its outcome).
    explores = False
    # Persistent per-client arrays, ``name -> (numpy dtype, length)`` (empty: none).
    client_state_arrays: Mapping[str, tuple] = {}
    # True when the message is the client's trained weights (or a masked part of them):
    # the loop rounds them to ``comm.value_dtype`` before `finish_client`. A method that
    # builds another message (Top-k) sets False and rounds it with `round_to_wire_`.
    sends_weights = True
    # Momentum dampening d of the server step, ``v = beta v + (1 - d) u``: 0 for FedAvgM;
    # AutoFLIP's EMA sets d = beta.
    server_dampening = 0.0

    def __init__(
        self,
        config: Config,
        prunable: torch.Tensor,
        trainable: torch.Tensor,
        layout=(),
        module: torch.nn.Module | None = None,
    ) -> None:
        self.config = config
        self.prunable = prunable
        self.trainable = trainable
        self.layout = tuple(layout)

    def round_channels(self, ctx: RoundContext) -> Mapping[str, Channel]:
        """The channels summed in this round (default: every declared channel).

        The same on every rank (a function of the round); a client sends only these. A
        method whose extra channels serve a few rounds (FedDIP's first-round holder
        average) leaves them out of the others, so they cost no reduction bytes there.
        """
        return self.channels

    # ------------------------------------------------------------------ set-up
    def initial_mask(
        self,
        *,
        weights: torch.Tensor,
        gradient: GradientFn | None = None,
        train: TrainFn | None = None,
        exploration: Any = None,
    ) -> torch.Tensor | None:
        """The global mask before round 1 (None: dense); may change ``weights`` in place."""
        return None

    def sparse_start_(self, weights: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """A random sparse start's mask, with ``model.init: sparse_kaiming`` applied.

        Methods whose first mask is drawn at the untrained initial weights (random masks,
        FedDST, SNIP) return their mask through this: with ``sparse_kaiming`` each conv /
        linear layer's kept weights are rescaled by ``1 / sqrt(density)`` in place
        (`hpc_fedprune.pruning.sparse_init`).
        """
        if self.config.model.init == "sparse_kaiming":
            rescale_kept_(weights, mask, self.layout)
        return mask

    def new_server(
        self, *, weights: torch.Tensor, mask: torch.Tensor | None, exploration: Any = None
    ) -> ServerState:
        """Rank 0: the server's state before round 1 (restored from a checkpoint on resume)."""
        return ServerState()

    # ------------------------------------------------------------- client side
    def plan_client(
        self,
        *,
        ctx: RoundContext,
        model: GlobalModel,
        client: int,
        state: Mapping[str, np.ndarray] | None = None,
    ) -> ClientPlan:
        """Train under the global mask (re-applied after every step); no penalty."""
        return ClientPlan(train_mask=model.mask)

    def finish_client(
        self,
        *,
        ctx: RoundContext,
        model: GlobalModel,
        client: int,
        plan: ClientPlan,
        local: torch.Tensor,
        gradient: torch.Tensor | None = None,
        state: Mapping[str, np.ndarray] | None = None,
    ) -> ClientUpdate:
        """Send the trained weights (over the global mask when there is one).

        The server's sum of ``p_c (w_c - w_global)`` is the weighted mean update.
        """
        return ClientUpdate(
            message=local,
            support=model.mask,
            shared_support=model.mask is not None,
            channels={"delta": Difference(local, model.weights)},
        )

    # ------------------------------------------------------------- server side
    def server_step(
        self,
        *,
        ctx: RoundContext,
        sums: Mapping[str, torch.Tensor],
        model: GlobalModel,
        server: ServerState,
    ) -> ServerResult:
        """Aggregate, zero what the old mask pruned (``keeps_old_mask``), re-prune.

        The one server step of every method: ``aggregate`` gives the merged float32
        weights, ``server_prune`` the new mask, and the weights leave masked by it; so
        does the server momentum buffer.
        """
        weights = self.aggregate(ctx=ctx, sums=sums, model=model, server=server)
        kept = model.mask is not None and self.keeps_old_mask(ctx)
        if kept:
            weights.mul_(model.mask)
        mask = self.server_prune(ctx=ctx, weights=weights, sums=sums, old=model.mask)
        if mask is not None and not (kept and mask is model.mask):
            weights.mul_(mask)
        if mask is not None and server.momentum is not None:
            # A pruned weight keeps no server momentum: it would push the weight when it
            # comes back (FedDIP's free regrowth, refreshed masks), and dense uploads
            # would keep feeding it while it is pruned.
            server.momentum.mul_(mask)
        return ServerResult(GlobalModel(weights, mask))

    def aggregate(
        self,
        *,
        ctx: RoundContext,
        sums: Mapping[str, torch.Tensor],
        model: GlobalModel,
        server: ServerState,
    ) -> torch.Tensor:
        """FedAvg(M): ``v = beta v + mean_delta``, ``w = w + server_lr * v`` (float32)."""
        return self.apply_update(server, model.weights, sums["delta"])

    def keeps_old_mask(self, ctx: RoundContext) -> bool:
        """Whether the aggregate is multiplied by the old mask before `server_prune`.

        True (the default): a pruned weight stays pruned unless `server_prune` picks it
        again, and then it returns at 0.
        """
        return True

    def server_prune(
        self,
        *,
        ctx: RoundContext,
        weights: torch.Tensor,
        sums: Mapping[str, torch.Tensor],
        old: torch.Tensor | None,
    ) -> torch.Tensor | None:
        """The global mask after this round (default: the old one, unchanged)."""
        return old

    def apply_update(
        self, server: ServerState, weights: torch.Tensor, mean_delta: torch.Tensor
    ) -> torch.Tensor:
        """Server learning rate and momentum on a mean update, in float64, to float32."""
        fed = self.config.federation
        step = mean_delta
        if fed.server_momentum > 0:
            if server.momentum is None:
                server.momentum = torch.zeros_like(mean_delta)
            server.momentum.mul_(fed.server_momentum)
            server.momentum.add_(mean_delta, alpha=1.0 - self.server_dampening)
            step = server.momentum
        return (weights.double() + fed.server_lr * step).to(torch.float32)

    def sparsity_reached(self, rounds: int) -> tuple[float, float] | None:
        """``(reached, target)``: the sparsity the method's schedule sets by round ``rounds``
        and the target sparsity of its config; None without a schedule that grows over the
        rounds (dense methods, and masks fixed at their sparsity before round 1).

        The run warns at start when ``reached < target`` (`hpc_fedprune.sim.targets`).
        """
        return None
