"""Layers whose randomness comes from an explicit generator, never torch's global one.

``nn.Dropout`` draws from the process-global generator, whose state depends on everything
the rank did before, so a client's dropout masks would depend on which rank trained it and
in which order. `KeyedDropout` draws from a ``torch.Generator`` that the training loop sets
per client (`set_dropout_generator`), e.g. ``torch_generator(seed, Stream.CLIENT, round,
client, device=...)``.
"""

from __future__ import annotations

import torch
from torch import nn

__all__ = ["KeyedDropout", "set_dropout_generator"]


class KeyedDropout(nn.Module):
    """Dropout that draws its masks from ``self.generator``.

    Parameters
    ----------
    p : float
        Probability of zeroing an element, in [0, 1).

    Notes
    -----
    In training mode with ``p > 0`` a generator must have been set (on the input's
    device); otherwise the forward pass raises ``RuntimeError`` instead of silently
    falling back to the global generator. In eval mode, or with ``p == 0``, it is the
    identity and needs no generator.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout probability must be in [0, 1), got {p}")
        self.p = float(p)
        self.generator: torch.Generator | None = None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.p == 0.0:
            return x
        if self.generator is None:
            raise RuntimeError(
                "KeyedDropout in training mode has no generator: call "
                "set_dropout_generator(model, torch_generator(seed, Stream.CLIENT, ...)) first"
            )
        keep = torch.empty_like(x).bernoulli_(1.0 - self.p, generator=self.generator)
        return x * keep / (1.0 - self.p)

    def extra_repr(self) -> str:
        return f"p={self.p}"


def set_dropout_generator(module: nn.Module, generator: torch.Generator | None) -> int:
    """Give every `KeyedDropout` in ``module`` the same ``generator``.

    Parameters
    ----------
    module : torch.nn.Module
        The network.
    generator : torch.Generator or None
        The generator to draw from (on the device of the activations).

    Returns
    -------
    int
        How many dropout layers were set (0 for networks without dropout).
    """
    count = 0
    for mod in module.modules():
        if isinstance(mod, KeyedDropout):
            mod.generator = generator
            count += 1
    return count
