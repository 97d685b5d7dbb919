"""What local training minimises and how it steps: the task's loss and the optimiser.

One definition for every place that trains a network: the clients' local training
(`hpc_fedprune.training.local`) and the shadow models of the membership attacks
(`hpc_fedprune.privacy.shadow`), so both follow ``training.optimizer`` the same way.
"""

from __future__ import annotations

from collections.abc import Iterable

import torch
import torch.nn.functional as F


def task_loss(output: torch.Tensor, target: torch.Tensor, task: str) -> torch.Tensor:
    """Mean cross-entropy (classification) or mean squared error (regression) of a batch."""
    if task == "classification":
        return F.cross_entropy(output, target)
    return F.mse_loss(output.reshape(-1), target)


def make_optimizer(params: Iterable[torch.nn.Parameter], training) -> torch.optim.Optimizer:
    """Adam or SGD over ``params`` with the ``training`` section's lr, momentum and decay."""
    params = list(params)
    if training.optimizer == "adam":
        return torch.optim.Adam(params, lr=training.lr, weight_decay=training.weight_decay)
    return torch.optim.SGD(
        params, lr=training.lr, momentum=training.momentum, weight_decay=training.weight_decay
    )
