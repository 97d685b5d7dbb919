"""The algorithm interface: the few points where federated methods differ.

An algorithm never sees MPI. The round loop (`hpc_fedprune.sim.loop`) calls the hooks
below in a fixed order; this base class is plain FedAvg (FedAvgM with server momentum),
and each method overrides only the points where it differs (DESIGN section 3b).

Set-up (every rank, once):
    ``set_layout``   -> the flat model's tensor layout, for per-tensor work (ERK masks,
                        per-layer penalties); called by ``make_algorithm``
    ``initial_mask`` -> the global mask before round 1 (None: dense), from the initial
                        weights and ``gradient(client, rng)``: the flat loss gradient at
                        those weights on the first batch of ``rng.permutation`` of that
                        client's data (SNIP); rank 0's result is broadcast to all ranks;
                        with ``initial_training = True`` also ``train(client, key, weights,
                        mask)``, local training in place, so the method may change the
                        initial weights in place (PruneFL's initial pruning on one client)
    ``set_exploration`` -> only with ``explores = True``, before ``initial_mask`` and not
                        on resume: the exploration phase's outcome (`hpc_fedprune.sim.
                        explore`; AutoFLIP), its scores on rank 0 only
Client side (every rank, once per client, in this order):
    ``load_client_state`` -> only when ``client_state_arrays`` declares state: the
                        client's persistent arrays as it left them (None at its first
                        participation), whatever rank trained it before
    ``begin_client`` -> remember per-client facts of the round (FedDIP: its mask and the
                        round's penalty coefficient) before the hooks below run
    ``train_mask``   -> the mask re-applied after every optimiser step (None: dense)
    ``forward_mask`` -> error feedback: forward and backward see ``w * M``, the step is
                        applied to the dense ``w`` (None: the forward pass sees ``w``)
    ``add_penalty_grad`` -> the gradient of an extra local loss term (FedProx, FedDIP),
                        taken at the weights the forward pass saw
    ``local_gradient`` -> only when ``needs_client_gradient(ctx)``: the flat loss
                        gradient at the trained weights on one batch keyed by (seed,
                        round, client) (FedDST's regrowth, PruneFL's squared gradients)
    ``finish_local`` -> changes to the local model after training (local purge)
    ``upload``       -> what the client sends, and the sums the server needs from it
    ``client_state`` -> only with declared state: the arrays to keep until the client's
                        next participation (Top-k's residual), stored exactly
Server side (rank 0 only, once per round):
    ``server_step``  -> new global weights and mask from the exact sums of all uploads

All server and algorithm state lives in the object on rank 0 and is returned by
``state_dict`` for checkpoints. Per-client state lives in the client-state store
(`hpc_fedprune.client_state.homes`), on the client's home rank, and is checkpointed there.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import torch

from ..config import Config

# Fractional bits of the fixed-point channels (see hpc_fedprune.comm.exact): 40 for real
# values, 0 for integer counts such as majority votes.
REAL_BITS = 40
COUNT_BITS = 0

# gradient(client, rng) -> flat loss gradient on the client's first batch (`initial_mask`).
GradientFn = Callable[[int, np.random.Generator], torch.Tensor]
# train(client, key, weights, mask): local training of ``client`` from ``weights`` in place,
# under ``mask`` (None: dense), batches keyed by (seed, round 0, client, key) (`initial_mask`).
TrainFn = Callable[[int, int, torch.Tensor, torch.Tensor | None], None]


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
    """

    round: int
    rounds: int
    seed: int
    lr: float
    cohort_samples: int
    cohort_size: int


@dataclass
class GlobalModel:
    """What every client downloads: flat float32 weights and the global mask (None: dense)."""

    weights: torch.Tensor
    mask: torch.Tensor | None = None


@dataclass
class Upload:
    """One client's upload.

    Attributes
    ----------
    message : torch.Tensor
        The float32 values the client sends, in dense layout (zero off the support). Its
        encoded size is the client's uplink bytes.
    support : torch.Tensor or None
        Bool positions that travel; None means every position.
    shared_support : bool
        True when the support is the global mask the server already holds, so the
        values travel without indices.
    local_mask : torch.Tensor or None
        A client-local mask sent beside the values (FedSparsify-Local), counted in bytes.
    side : tuple of torch.Tensor
        Further vectors sent beside the message, each encoded on its own and counted in
        bytes: a bool tensor as a mask (FedDST's client mask), a float tensor as values
        (PruneFL's gradient).
    channels : dict
        ``name -> float64 tensor``: the quantities the server sums over the cohort,
        computed from what was sent; summed exactly in fixed point with the fractional
        bits the algorithm declares in ``channel_bits``.
    """

    message: torch.Tensor
    support: torch.Tensor | None = None
    shared_support: bool = False
    local_mask: torch.Tensor | None = None
    channels: dict[str, torch.Tensor] = field(default_factory=dict)
    side: tuple[torch.Tensor, ...] = ()


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
    """

    name = "fedavg"
    prunes = False  # whether the method keeps a global mask (and writes /masks)
    channel_bits = {"delta": REAL_BITS}  # what every client's upload adds to the sums
    # True when every channel is zero outside the global mask (clients train under it and
    # send nothing else), so the ranks' sums travel as values over the mask, no indices.
    channels_within_mask = False
    # True when `initial_mask` takes ``train=`` (local training before round 1).
    initial_training = False
    # True when the loop runs the exploration phase before round 1 (`set_exploration`).
    explores = False
    # Persistent per-client arrays, ``name -> (numpy dtype, length)`` (empty: none); the
    # loop then calls `load_client_state` before training and `client_state` after upload.
    client_state_arrays: dict[str, tuple] = {}

    def __init__(self, config: Config, prunable: torch.Tensor, trainable: torch.Tensor) -> None:
        self.config = config
        self.prunable = prunable
        self.trainable = trainable
        self.momentum: torch.Tensor | None = None  # server momentum buffer (FedAvgM)

    # ------------------------------------------------------------------ set-up
    layout: tuple = ()  # TensorInfo per tensor of the flat model (see set_layout)

    def set_layout(self, layout) -> None:
        """Receive the flat model's layout (``FlatModel.layout``) before any other hook."""
        self.layout = tuple(layout)

    def initial_mask(
        self, weights: torch.Tensor, gradient: GradientFn | None = None
    ) -> torch.Tensor | None:
        """The global mask before round 1 (None: dense).

        ``gradient(client, rng)`` returns the flat loss gradient at ``weights`` on the first
        batch of ``rng.permutation`` of ``client``'s data, for masks scored at
        initialisation; draw ``client`` and pass ``rng`` from a keyed stream so that the
        choice does not depend on the ranks.
        """
        return None

    # ------------------------------------------------------------- client side
    def load_client_state(self, client: int, state: dict[str, np.ndarray] | None) -> None:
        """Receive ``client``'s persistent arrays before its training (None: first time).

        Called only for methods that declare ``client_state_arrays``; the arrays are host
        numpy arrays of the declared dtypes and lengths, owned by the algorithm from now on.
        """

    def client_state(self, client: int) -> dict[str, np.ndarray]:
        """The arrays ``client`` keeps until its next participation (after ``upload``)."""
        return {}

    def begin_client(self, ctx: RoundContext, model: GlobalModel, client: int) -> None:
        """Called first for every client of a round: a place to prepare what later hooks use."""

    def train_mask(self, ctx: RoundContext, model: GlobalModel, client: int) -> torch.Tensor | None:
        """Mask re-applied after every local optimiser step; default: the global mask."""
        return model.mask

    def forward_mask(
        self, ctx: RoundContext, model: GlobalModel, client: int
    ) -> torch.Tensor | None:
        """Mask the forward pass sees, with the gradient applied to the dense weights.

        When set, every local step runs forward and backward on ``w * M`` and the optimiser
        then steps the dense ``w`` (error feedback, Lin et al. 2020): masked coordinates keep
        moving. Default None: the forward pass sees the weights themselves.
        """
        return None

    def add_penalty_grad(
        self, params: torch.Tensor, grad: torch.Tensor, anchor: torch.Tensor
    ) -> None:
        """Add the gradient of an extra local loss term to the flat gradient, in place.

        Penalties of the methods here (proximal, norm) have closed-form gradients, so one
        vector operation on the flat buffers replaces a second autograd graph per step.
        ``params`` holds the weights the forward pass saw (``w * M`` under a forward mask),
        ``anchor`` the weights the client downloaded.
        """

    def needs_client_gradient(self, ctx: RoundContext) -> bool:
        """Whether the round's clients report a loss gradient (``local_gradient``); default no."""
        return False

    def local_gradient(
        self, ctx: RoundContext, model: GlobalModel, client: int, grad: torch.Tensor
    ) -> None:
        """Receive the flat loss gradient at the client's trained weights on one batch.

        Called after training and before ``finish_local``, only when
        ``needs_client_gradient(ctx)``; the batch is keyed by (seed, round, client).
        """

    def finish_local(
        self, ctx: RoundContext, model: GlobalModel, local: torch.Tensor, client: int
    ) -> torch.Tensor | None:
        """Change the local weights in place after training; return a client-local mask or None."""
        return None

    def upload(
        self,
        ctx: RoundContext,
        model: GlobalModel,
        local: torch.Tensor,
        local_mask: torch.Tensor | None,
        samples: int,
    ) -> Upload:
        """The client sends its weights (over the global mask when there is one).

        The server's inverse turns them into the sample-weighted update
        ``p_c (w_c - w_global)`` with ``p_c = n_c / sum of n over the cohort``.
        """
        weight = samples / ctx.cohort_samples
        delta = (local.double() - model.weights.double()) * weight
        return Upload(
            message=local,
            support=model.mask,
            shared_support=model.mask is not None,
            channels={"delta": delta},
        )

    # ------------------------------------------------------------- server side
    def server_step(
        self, ctx: RoundContext, sums: dict[str, torch.Tensor], model: GlobalModel
    ) -> GlobalModel:
        """FedAvg(M): ``v = beta v + mean_delta``, ``w = w + server_lr * v``, masked."""
        return GlobalModel(self.apply_update(model.weights, sums["delta"], model.mask), model.mask)

    # Momentum dampening d of the server step, ``v = beta v + (1 - d) u``: 0 for FedAvgM;
    # AutoFLIP's EMA sets d = beta.
    server_dampening = 0.0

    def apply_update(
        self, weights: torch.Tensor, mean_delta: torch.Tensor, mask: torch.Tensor | None
    ) -> torch.Tensor:
        """Server learning rate and momentum on a mean update, in float64, then masked."""
        fed = self.config.federation
        step = mean_delta
        if fed.server_momentum > 0:
            if self.momentum is None:
                self.momentum = torch.zeros_like(mean_delta)
            self.momentum.mul_(fed.server_momentum)
            self.momentum.add_(mean_delta, alpha=1.0 - self.server_dampening)
            step = self.momentum
        new = (weights.double() + fed.server_lr * step).to(torch.float32)
        if mask is not None:
            new.mul_(mask)
        return new

    # ------------------------------------------------------------ checkpoints
    def state_dict(self) -> dict:
        """Server/algorithm state for checkpoints (tensors moved to the CPU)."""
        return {"momentum": None if self.momentum is None else self.momentum.cpu()}

    def load_state_dict(self, state: dict, device: str) -> None:
        m = state.get("momentum")
        self.momentum = None if m is None else m.to(device)

    def metrics(self) -> dict[str, float]:
        """Extra per-round metrics of the method (written to /metrics)."""
        return {}
