"""FedProx: FedAvg with the proximal term (mu/2) * ||w - w_global||^2 in the local loss."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .base import Algorithm, ClientPlan


@dataclass(frozen=True)
class ProximalPenalty:
    """``(mu/2) ||w - w_global||^2`` over the positions where ``pull`` is ``mu`` (else 0)."""

    pull: torch.Tensor  # float32: mu on trainable parameters, 0 on buffers

    def add_grad_(self, params: torch.Tensor, grad: torch.Tensor, anchor: torch.Tensor) -> None:
        # d/dw (mu/2)||w - w_g||^2 = mu (w - w_g); parameters come first in the flat
        # buffer, so a trainer that steps only them passes the prefix.
        grad.addcmul_(params - anchor, self.pull[: params.numel()])


class FedProx(Algorithm):
    """The true squared proximal term over all trainable parameters (Li et al., 2020)."""

    name = "fedprox"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Buffers (BatchNorm statistics) are not trained, so the term only pulls parameters.
        pull = self.trainable.to(torch.float32) * self.config.algorithm.fedprox.mu
        self.penalty = ProximalPenalty(pull)

    def plan_client(self, *, ctx, model, client, state=None) -> ClientPlan:
        return ClientPlan(train_mask=model.mask, penalty=self.penalty)
