"""Local training of one client on the rank's one model object.

The rank builds one model and one optimiser and reuses them for every client: weights
are loaded in place, the optimiser state is cleared, and batches are index slices of
tensors that already live on the rank's device (no DataLoader, no per-client objects).

The optimiser works on ONE flat parameter: the model's parameters are views into the
prefix of the flat buffer (buffers such as BatchNorm statistics follow them), so a step,
a mask and a penalty gradient are each a single vector operation.

Two ways a mask enters a step: a *train mask* is re-applied after every optimiser step
(projection: pruned weights stay zero), a *forward mask* is applied only for the forward
and backward pass, after which the dense weights are restored and stepped (error
feedback: pruned weights keep moving). A plan's *readjustment* replaces the train mask
once, before the last local epoch (`ClientPlan.readjust`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from ..config import Config
from ..models import set_dropout_generator
from ..models.objective import make_optimizer, task_loss
from ..rng import Stream, numpy_rng, torch_generator
from .augment import Augmenter
from .batches import batches_per_epoch, epoch_order
from .gradients import GRADIENT_KEY
from .samples import client_samples

if TYPE_CHECKING:
    from ..algorithms.base import ClientPlan


@dataclass
class ClientResult:
    """What local training reports: mean training loss, the work done, and the train mask
    a readjustment left (None: the plan's own)."""

    loss: float
    steps: int
    samples: int
    train_mask: torch.Tensor | None = None


class LocalTrainer:
    """Trains clients one after another on one model.

    Parameters
    ----------
    flat_model : hpc_fedprune.models.FlatModel
        The rank's model; parameters first in its flat buffer.
    config : Config
        Resolved run config (training section and task).
    task : {'classification', 'regression'}
    x_train, y_train : torch.Tensor
        The whole training set, already on the rank's device.
    """

    def __init__(
        self, flat_model, config: Config, task: str, x_train: torch.Tensor, y_train: torch.Tensor
    ) -> None:
        self.model = flat_model
        self.config = config
        self.task = task
        self.x = x_train
        self.y = y_train
        n_params = flat_model.num_params
        self.params = torch.nn.Parameter(flat_model.flat[:n_params], requires_grad=False)
        self.params.grad = flat_model.grad[:n_params]
        self._optimizer: torch.optim.Optimizer | None = None  # made at first use: `optimizer`
        self.mask_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.forward_cache: tuple[torch.Tensor, torch.Tensor] | None = None
        self.dense: torch.Tensor | None = None  # the dense weights while a forward mask is on
        # Dropout layers draw from a per-client generator (KeyedDropout), never the global RNG.
        self.has_dropout = set_dropout_generator(flat_model.module, None) > 0
        self.augment = Augmenter.from_config(config)  # crops and flips of training batches

    @property
    def optimizer(self) -> torch.optim.Optimizer:
        """The client optimiser over the flat parameter, made when first needed.

        Making a torch optimiser imports ``torch._dynamo`` (seconds per process); a rank
        that never trains a client (more ranks than clients per round) never pays for it.
        """
        if self._optimizer is None:
            self._optimizer = make_optimizer([self.params], self.config.training)
        return self._optimizer

    def _float_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The mask as float32, cached while the same mask object is in use."""
        if self.mask_cache is None or self.mask_cache[0] is not mask:
            self.mask_cache = (mask, mask.to(torch.float32))
        return self.mask_cache[1]

    def _float_forward_mask(self, mask: torch.Tensor) -> torch.Tensor:
        """The forward mask over the parameters as float32, cached like `_float_mask`."""
        if self.forward_cache is None or self.forward_cache[0] is not mask:
            self.forward_cache = (mask, mask[: self.model.num_params].to(torch.float32))
        return self.forward_cache[1]

    def loss_fn(self, output: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """The task's loss of a batch (`hpc_fedprune.models.objective.task_loss`)."""
        return task_loss(output, target, self.task)

    def train(
        self,
        *,
        client: int,
        round_index: int,
        indices: np.ndarray,
        start: torch.Tensor,
        plan: ClientPlan,
        lr: float,
        key: tuple[int, ...] = (),
    ) -> ClientResult:
        """Train one client from ``start`` as ``plan`` says; the result stays in the model.

        The plan's train mask is re-applied after every step; under its forward mask each
        step's forward and backward pass (and the penalty gradient) see ``w * M`` while the
        optimiser steps the dense ``w``. Batch order comes from (seed, round, client), and
        dropout draws from a generator seeded from the same key, so a client's training is
        identical on whatever rank runs it. ``key`` extends that key (training outside the
        rounds, e.g. PruneFL's initial passes at round 0).
        """
        t = self.config.training
        seed = self.config.runtime.seed
        fm = self.model
        fm.load_(start)
        mask, forward_mask, penalty = plan.train_mask, plan.forward_mask, plan.penalty
        fmask = None
        if mask is not None:
            fmask = self._float_mask(mask)
            fm.flat.mul_(fmask)
        params = self.params.data
        ffwd = None
        if forward_mask is not None:
            ffwd = self._float_forward_mask(forward_mask)
            if self.dense is None or self.dense.shape != params.shape:
                self.dense = torch.empty_like(params)
        self.optimizer.state.clear()
        for group in self.optimizer.param_groups:
            group["lr"] = lr
        rng = numpy_rng(seed, Stream.CLIENT, round_index, client, *key)
        augment_key = (Stream.CLIENT, round_index, client, *key)
        n = len(indices)
        x = client_samples(self.x, indices)  # indexed like self.x (read now, on demand)
        batch = min(t.batch_size, n)
        anchor = start[: fm.num_params]
        fm.module.train()
        # Batch losses stay on the device until the client is done (no host sync and no
        # float64 ops per step); `_mean_loss` sums them in float64, in step order.
        losses: list[torch.Tensor] = []
        sizes: list[int] = []
        steps = 0
        target_steps = t.local_steps if t.local_steps > 0 else None
        if self.has_dropout:
            gen = torch_generator(
                seed, Stream.CLIENT, round_index, client, *key, device=self.x.device
            )
            set_dropout_generator(fm.module, gen)
        else:
            gen = None
        readjust_at, readjusted = None, None
        if plan.readjust is not None:  # before the last epoch (or its worth of steps)
            per_epoch = batches_per_epoch(n, batch, t.drop_last)
            last = (target_steps or per_epoch * t.local_epochs) - per_epoch
            readjust_at = max(0, last)
        epoch = 0
        while True:
            order, starts = epoch_order(rng, indices, batch, t.drop_last)
            shuffled = torch.as_tensor(order, device=self.x.device)  # batches: slices of it
            for lo in starts:
                if steps == readjust_at and readjusted is None:
                    readjusted = self._readjust(plan, mask, (client, round_index, *key),
                                                indices, gen)  # fmt: skip
                    mask, fmask = readjusted, self._float_mask(readjusted)
                    fm.flat.mul_(fmask)
                sel = shuffled[lo : lo + batch]
                xb, yb = self.augment.batch(x[sel], augment_key, steps), self.y[sel]
                fm.zero_grad()
                if ffwd is not None:
                    self.dense.copy_(params)  # keep w; the pass below sees w * M
                    params.mul_(ffwd)
                loss = self.loss_fn(fm.module(xb), yb)
                loss.backward()
                if penalty is not None:
                    penalty.add_grad_(params, self.params.grad, anchor)
                if ffwd is not None:
                    params.copy_(self.dense)  # the gradient at w * M steps the dense w
                self.optimizer.step()
                if fmask is not None:
                    fm.flat.mul_(fmask)
                losses.append(loss.detach())
                sizes.append(len(sel))
                steps += 1
                if target_steps is not None and steps >= target_steps:
                    break
            epoch += 1
            if target_steps is None and epoch >= t.local_epochs:
                break
            if target_steps is not None and steps >= target_steps:
                break
        return ClientResult(
            loss=_mean_loss(losses, sizes), steps=steps, samples=n, train_mask=readjusted
        )

    def _readjust(self, plan, mask, key, indices, dropout_gen) -> torch.Tensor:
        """Run ``plan.readjust`` at the current weights; returns the new train mask.

        The gradient is taken on the batch `client_gradient` would use (key extended by
        ``GRADIENT_KEY``); the pass changes neither the weights nor normalisation
        statistics, nor the client's dropout stream. The optimiser state (momentum, Adam's
        moments) is cleared where the mask changed: a weight that comes back starts afresh.
        """
        fm = self.model
        client, round_index, *extra = key
        saved = fm.flat.detach().clone()
        seed = self.config.runtime.seed
        rng = numpy_rng(seed, Stream.CLIENT, round_index, client, *extra, GRADIENT_KEY)
        grad = self.first_batch_gradient(saved, indices, rng)
        fm.flat.copy_(saved)
        if dropout_gen is not None:
            set_dropout_generator(fm.module, dropout_gen)
        current = mask if mask is not None else torch.ones_like(saved, dtype=torch.bool)
        new = plan.readjust(saved, grad, current)
        changed = (new != current)[: fm.num_params]
        for state in self.optimizer.state.values():
            for value in state.values():
                if torch.is_tensor(value) and value.shape == changed.shape:
                    value[changed] = 0
        return new

    def first_batch_gradient(
        self, weights: torch.Tensor, indices: np.ndarray, rng: np.random.Generator
    ) -> torch.Tensor:
        """The flat loss gradient at ``weights`` on one client's first batch (SNIP's score).

        The batch is the first ``batch_size`` samples of ``rng.permutation`` of the client's
        ``indices``, so the caller's key fixes it on every rank. The model is in training
        mode (batch statistics, as in a local step); dropout draws from ``rng`` too.
        Returns a new tensor as long as the flat model, zero on buffers.
        """
        fm = self.model
        fm.load_(weights)
        fm.module.train()
        order = rng.permutation(len(indices))[: min(self.config.training.batch_size, len(indices))]
        if self.has_dropout:  # drawn after the batch, so the batch is the same with or without
            gen = torch.Generator(device=self.x.device).manual_seed(int(rng.integers(2**62)))
            set_dropout_generator(fm.module, gen)
        chosen = np.asarray(indices)[order]
        sel = torch.as_tensor(chosen, device=self.x.device)
        xb = client_samples(self.x, chosen)[sel]
        if self.augment.enabled:  # drawn last, so the batch and dropout do not depend on it
            draws = self.augment.draw(rng, len(order))
            xb = self.augment.apply(xb, torch.from_numpy(draws).to(xb.device))
        fm.zero_grad()
        self.loss_fn(fm.module(xb), self.y[sel]).backward()
        return fm.grad.detach().clone()


def _mean_loss(losses: list[torch.Tensor], sizes: list[int]) -> float:
    """Sample-weighted mean of the batch losses: one device-to-host copy per client.

    Summed in float64 in step order. A float32 loss is exact as a Python float (a double)
    and so is its product with the batch size, so this gives the same bits as a float64
    running sum on the device, without three small tensor ops per step.
    """
    if not losses:
        return 0.0
    total = 0.0
    for value, size in zip(torch.stack(losses).tolist(), sizes):
        total += value * size
    return total / max(sum(sizes), 1)
