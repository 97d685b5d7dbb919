"""A custom network as a plug-in: a two-layer perceptron with a tanh hidden layer.

``register_model`` adds it to the model table under ``tiny_tanh``; the keyword-only
parameters after ``regression`` are its options, set with ``model.options``. Weights are
set by the registry's seeded init (``init``), the same on every rank.
"""

from __future__ import annotations

import math

from torch import nn

from hpc_fedprune.models import register_model


@register_model("tiny_tanh", init="glorot", input_rank=None, default_input=(1, 8, 8))
class TinyTanh(nn.Module):
    """Flatten, linear, tanh, linear: ``num_outputs`` logits (one value for regression)."""

    def __init__(self, input_shape, num_outputs, *, regression, hidden: int = 24) -> None:
        super().__init__()
        self.regression = regression
        self.body = nn.Sequential(
            nn.Flatten(),
            nn.Linear(math.prod(input_shape), hidden),
            nn.Tanh(),
            nn.Linear(hidden, 1 if regression else num_outputs),
        )

    def forward(self, x):
        out = self.body(x)
        return out.squeeze(1) if self.regression else out
