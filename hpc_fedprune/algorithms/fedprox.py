"""FedProx: FedAvg with the proximal term (mu/2) * ||w - w_global||^2 in the local loss."""

from __future__ import annotations

import torch

from .base import Algorithm


class FedProx(Algorithm):
    """The true squared proximal term over all trainable parameters (Li et al., 2020)."""

    name = "fedprox"

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Buffers (BatchNorm statistics) are not trained, so the term only pulls parameters.
        self.pull = self.trainable.to(torch.float32) * self.config.algorithm.fedprox.mu

    def add_penalty_grad(
        self, params: torch.Tensor, grad: torch.Tensor, anchor: torch.Tensor
    ) -> None:
        # d/dw (mu/2)||w - w_g||^2 = mu (w - w_g)
        if self.pull.device != params.device:
            self.pull = self.pull.to(params.device)
        grad.addcmul_(params - anchor, self.pull)
