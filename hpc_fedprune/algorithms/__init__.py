"""Federated methods as small classes over one shared round loop (no MPI here)."""

from __future__ import annotations

from .autoflip import AutoFLIP
from .base import (
    Algorithm,
    Channel,
    ClientPlan,
    ClientUpdate,
    Difference,
    GlobalModel,
    Readjust,
    RoundContext,
    ServerResult,
    ServerState,
)
from .feddip import FedDIP
from .feddst import FedDST
from .fedprox import FedProx
from .fedsparsify import FedSparsify
from .oneshot import OneShot
from .prunefl import PruneFL
from .random_mask import RandomMask
from .snip import SNIP
from .topk import TopK

REGISTRY: dict[str, type[Algorithm]] = {
    "fedavg": Algorithm,
    "fedprox": FedProx,
    "fedsparsify": FedSparsify,
    "feddip": FedDIP,
    "snip": SNIP,
    "oneshot": OneShot,
    "random_mask": RandomMask,
    "prunefl": PruneFL,
    "feddst": FedDST,
    "autoflip": AutoFLIP,
    "topk": TopK,
}


def make_algorithm(config, prunable, trainable, layout=(), module=None) -> Algorithm:
    """The algorithm object named by ``config.algorithm.name``, given the model's layout
    (and the network, for methods that need its graph)."""
    return REGISTRY[config.algorithm.name](config, prunable, trainable, layout, module)


__all__ = [
    "REGISTRY",
    "Algorithm",
    "Channel",
    "ClientPlan",
    "ClientUpdate",
    "Difference",
    "GlobalModel",
    "Readjust",
    "RoundContext",
    "ServerResult",
    "ServerState",
    "make_algorithm",
]
