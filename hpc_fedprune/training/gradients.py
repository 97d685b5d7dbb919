"""Gradients and training passes that methods ask of the loop outside ordinary local training.

- `client_gradient`: the loss gradient at a client's trained weights on one batch, for
  plans with ``needs_gradient`` (PruneFL's server sums its square). The batch is the
  first of a permutation drawn from ``numpy_rng(seed, Stream.CLIENT, round, client,
  GRADIENT_KEY)``: the training key of the client and round extended by one integer, so
  the batch is the same on every rank and differs from the training batches' stream. A
  plan's readjustment (FedDST) takes its gradient in the middle of training on the same
  batch (`LocalTrainer`).
- `initial_trainer`: the ``train`` callable of ``initial_mask`` for methods with
  ``initial_training = True`` (PruneFL's initial pruning on one client before round 1):
  local training at round 0 keyed by (seed, 0, client, key).
"""

from __future__ import annotations

import numpy as np
import torch

from ..algorithms.base import ClientPlan
from ..rng import Stream, numpy_rng

GRADIENT_KEY = 1  # the extra key of the gradient batch (round and client come first)


def client_gradient(
    trainer, local: torch.Tensor, indices: np.ndarray, seed: int, round_index: int, client: int
) -> torch.Tensor:
    """Flat loss gradient at ``local`` on one keyed batch of the client's data.

    ``local`` (the model's own flat buffer) is left exactly as it was: the pass runs in
    training mode, so normalisation statistics it updates are put back.
    """
    saved = local.clone()
    rng = numpy_rng(seed, Stream.CLIENT, round_index, client, GRADIENT_KEY)
    grad = trainer.first_batch_gradient(saved, indices, rng)
    local.copy_(saved)
    return grad


def initial_trainer(trainer, train_parts, config):
    """``train(client, key, weights, mask)``: one local training of ``client`` at round 0.

    Starts from ``weights`` and writes the trained weights back into it; the mask (None:
    dense) is re-applied after every step, as in a round.
    """

    def train(client: int, key: int, weights: torch.Tensor, mask: torch.Tensor | None) -> None:
        trainer.train(
            client=client,
            round_index=0,
            indices=train_parts[client],
            start=weights,
            plan=ClientPlan(train_mask=mask),
            lr=config.training.lr,
            key=(key,),
        )
        weights.copy_(trainer.model.flat)

    return train
