"""Federated methods as small classes over one shared round loop (no MPI here)."""

from __future__ import annotations

from .base import Algorithm, GlobalModel, RoundContext, Upload
from .feddip import FedDIP
from .fedprox import FedProx
from .fedsparsify import FedSparsify
from .oneshot import OneShot
from .random_mask import RandomMask
from .snip import SNIP

REGISTRY: dict[str, type[Algorithm]] = {
    "fedavg": Algorithm,
    "fedprox": FedProx,
    "fedsparsify": FedSparsify,
    "feddip": FedDIP,
    "snip": SNIP,
    "oneshot": OneShot,
    "random_mask": RandomMask,
}


def make_algorithm(config, prunable, trainable, layout=()) -> Algorithm:
    """The algorithm object named by ``config.algorithm.name``, given the model's layout."""
    algorithm = REGISTRY[config.algorithm.name](config, prunable, trainable)
    algorithm.set_layout(layout)
    return algorithm


__all__ = ["Algorithm", "GlobalModel", "RoundContext", "Upload", "make_algorithm", "REGISTRY"]
