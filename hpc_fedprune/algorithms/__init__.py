"""Federated methods as small classes over one shared round loop (no MPI here)."""

from __future__ import annotations

from .base import Algorithm, GlobalModel, RoundContext, Upload
from .fedprox import FedProx
from .fedsparsify import FedSparsify

REGISTRY: dict[str, type[Algorithm]] = {
    "fedavg": Algorithm,
    "fedprox": FedProx,
    "fedsparsify": FedSparsify,
}


def make_algorithm(config, prunable, trainable) -> Algorithm:
    """The algorithm object named by ``config.algorithm.name``."""
    return REGISTRY[config.algorithm.name](config, prunable, trainable)


__all__ = ["Algorithm", "GlobalModel", "RoundContext", "Upload", "make_algorithm", "REGISTRY"]
